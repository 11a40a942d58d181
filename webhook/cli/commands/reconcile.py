"""`egress-guard reconcile`: bring existing namespaces to the NetworkPolicies admission makes."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import click

from webhook.cli.cluster_options import api_client_or_exit, cluster_options
from webhook.cli.errors import EXIT_DENIED, fail
from webhook.cli.policy_option import config_option
from webhook.config.policy_file import PolicyFileError, PolicyStore
from webhook.config.settings import (
    RECONCILE_WRITES_IN_FLIGHT,
    RECONCILE_WRITES_PER_SECOND,
    RECONCILER_HEALTH_PORT,
)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _default_lease_namespace() -> str:
    """The pod's own namespace in a cluster, else egress-guard's usual one."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "egress-guard"
    except OSError:
        return "egress-guard"


def _default_identity() -> str:
    """Unique per replica: the pod name (the hostname in a pod) and the process id."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}"


def _configure_logging(level: str) -> None:
    from webhook.http.logs import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


@click.command()
@config_option
@cluster_options
@click.option(
    "--once",
    is_flag=True,
    help="One pass, then exit: 1 if anything failed or was left undone.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=1.0),
    default=60.0,
    show_default=True,
    help="Seconds between passes.",
)
@click.option(
    "--prune/--no-prune",
    default=True,
    show_default=True,
    help="Delete generated policies no longer wanted (namespace opted out, profile unused).",
)
@click.option(
    "--writes-per-second",
    type=click.FloatRange(min=0.1),
    default=RECONCILE_WRITES_PER_SECOND,
    show_default=True,
    help="Most writes a pass sends per second (a 429's Retry-After pauses them all).",
)
@click.option(
    "--writes-in-flight",
    type=click.IntRange(1, 32),
    default=RECONCILE_WRITES_IN_FLIGHT,
    show_default=True,
    help="Writes sent at once.",
)
@click.option(
    "--leader-elect/--no-leader-elect",
    default=True,
    show_default=True,
    help="Act only while holding the Lease (several replicas: one acts).",
)
@click.option(
    "--lease-name", default="egress-guard-reconciler", show_default=True, help="Lease to hold."
)
@click.option("--lease-namespace", help="Namespace of the Lease [default: the pod's own].")
@click.option("--identity", help="This replica's name in the Lease [default: hostname_pid].")
@click.option(
    "--lease-duration",
    type=click.FloatRange(min=3.0),
    default=15.0,
    show_default=True,
    help="Seconds a silent leader keeps the lease; renewal every fifth of it.",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    default=RECONCILER_HEALTH_PORT,
    show_default=True,
    help="Plain HTTP /healthz (503 once the loop stops making progress), /readyz and /metrics; "
    "0: none.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def reconcile(**flags: Any) -> None:
    """Create, update and prune generated NetworkPolicies in every opted-in namespace.

    With several replicas, only the holder of the Lease acts. Objects egress-guard did not
    generate and exempt namespaces are never touched.
    """
    _configure_logging(flags["log_level"])
    from webhook.cluster.write_pacing import PacingSettings
    from webhook.reconcile.leader_election import LeaderElector, LeaseSettings
    from webhook.reconcile.loop import reconcile_once
    from webhook.reconcile.reconciler import (
        RECONCILE_WRITE_BUDGET_S,
        Reconciler,
        ReconcileReport,
    )

    try:
        policies = PolicyStore(flags["config"])
    except PolicyFileError as err:
        fail(str(err))
    api = api_client_or_exit(flags)
    pacing = PacingSettings(
        writes_per_second=flags["writes_per_second"], in_flight=flags["writes_in_flight"]
    )
    # A write must end before another replica may take the lease over: within the margin
    # between this replica's renew deadline and the lease's duration.
    margin = flags["lease_duration"] / 3 if flags["leader_elect"] else RECONCILE_WRITE_BUDGET_S
    reconciler = Reconciler(
        api,
        policies,
        prune=flags["prune"],
        pacing=pacing,
        write_budget_s=min(RECONCILE_WRITE_BUDGET_S, margin),
    )
    elector = None
    if flags["leader_elect"]:
        duration = flags["lease_duration"]
        try:
            settings = LeaseSettings(
                namespace=flags["lease_namespace"] or _default_lease_namespace(),
                name=flags["lease_name"],
                identity=flags["identity"] or _default_identity(),
                duration_s=duration,
                renew_deadline_s=duration * 2 / 3,
                retry_period_s=duration / 5,
            )
        except ValueError as err:
            fail(str(err))
        elector = LeaderElector(api, settings)
    log = logging.getLogger("egress_guard.reconcile")

    def record(report: ReconcileReport) -> None:
        log.info("reconcile pass: %s", report.summary(), extra={"fields": report.as_fields()})

    if flags["once"]:
        report = reconcile_once(reconciler, elector)
        if report is None:
            holder = elector.holder if elector else None
            click.echo(f"not the leader ({holder or 'another replica'} holds the lease)", err=True)
            return
        record(report)
        click.echo(f"reconciled {report.summary()}", err=True)
        if report.stopped:
            click.echo(
                f"error: the pass stopped early (the lease was lost): {report.left} changes "
                "left undone; run it again",
                err=True,
            )
        if not report.complete:
            sys.exit(EXIT_DENIED)
        return
    _run_until_stopped(reconciler, elector, flags, record)


def _run_until_stopped(
    reconciler: Any, elector: Any, flags: dict[str, Any], record: Callable[[Any], None]
) -> None:
    """The loop, with its health and metrics port, until SIGTERM or SIGINT."""
    from webhook.reconcile.health import Progress, serve_health, stall_limit
    from webhook.reconcile.loop import run_loop
    from webhook.reconcile.metrics import ReconcileMetrics

    metrics = ReconcileMetrics()

    def record_and_count(report: Any) -> None:
        record(report)
        metrics.observe(report)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    progress = Progress(stall_limit(flags["interval"]))
    health = None
    if flags["health_port"]:
        health = serve_health(progress, port=flags["health_port"], metrics=metrics.exposition)
    try:
        run_loop(
            reconciler,
            elector,
            interval_s=flags["interval"],
            stop=stop,
            on_report=record_and_count,
            progress=progress,
        )
    finally:
        if health is not None:
            health.shutdown()


COMMAND = reconcile
