"""`egress-guard doctor`: is enforcement real on this cluster? Read-only."""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import replace
from typing import Any

import click

from webhook.cli.check_report import to_json, to_yaml
from webhook.cli.cluster_options import api_client_or_exit, cluster_options
from webhook.cli.errors import EXIT_DENIED, fail
from webhook.cli.policy_option import config_option, load_policy_or_exit
from webhook.doctor.diagnose import CHECK_IDS, Diagnosis
from webhook.doctor.results import Status

OUTPUTS = ("table", "json", "yaml")
STATUS_ORDER = {Status.PROBLEM: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.OK: 3}


def _check_help() -> str:
    return "Run only this check (repeatable): " + ", ".join(CHECK_IDS) + " [default: all]."


@click.command()
@config_option
@cluster_options
@click.option(
    "-n",
    "--namespace",
    default="egress-guard",
    show_default=True,
    help="Namespace egress-guard is installed in (as `manifests --namespace`).",
)
@click.option(
    "--name",
    default="egress-guard",
    show_default=True,
    help="Name of its webhook configurations, Service and TLS Secret prefix.",
)
@click.option(
    "--check",
    "checks",
    multiple=True,
    type=click.Choice(CHECK_IDS),
    metavar="ID",
    help=_check_help(),
)
@click.option(
    "--probe",
    is_flag=True,
    help="Also test enforcement for real: pods and a default-deny policy in a scratch "
    "namespace, deleted afterwards. Writes (needs create/delete namespaces, create pods and "
    "networkpolicies).",
)
@click.option(
    "--probe-image",
    default="busybox:1.36",
    show_default=True,
    help="Image of the probe's pods (needs sh, wget and httpd).",
)
@click.option(
    "--probe-timeout",
    type=click.FloatRange(min=10),
    default=120.0,
    show_default=True,
    help="Seconds the probe may take before it gives up (and cleans up).",
)
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default="table", show_default=True)
def doctor(**flags: Any) -> None:
    """Check that enforcement is real on a cluster, and say what to do about what is not.

    Reads only (unless --probe): the CNI and its settings, the installed webhooks, their
    certificate and endpoints, DNS and the proxy, the managed namespaces and the generated
    NetworkPolicies. Exit 0 when nothing is a problem, 1 when something is, 2 on usage or
    connection errors.
    """
    from webhook.cluster.api_calls import ApiRejected, ApiUnreachable
    from webhook.cluster.cluster_survey import SurveyTargets, survey_cluster, workloads_in
    from webhook.config.policy_file import FixedPolicy
    from webhook.deploy.objects import (
        DeployOptions,
        mutating_webhook_configuration,
        validating_webhook_configuration,
    )
    from webhook.doctor import namespaces
    from webhook.doctor.diagnose import Observations, diagnose, reads_for
    from webhook.reconcile.reconciler import Reconciler

    policy = load_policy_or_exit(flags["config"])
    api = api_client_or_exit(flags)
    check_ids = tuple(c for c in CHECK_IDS if not flags["checks"] or c in flags["checks"])
    targets = SurveyTargets(namespace=flags["namespace"], name=flags["name"])
    survey = survey_cluster(api, policy, targets, wanted=reads_for(check_ids) | {"version"})
    if survey.server_version is None:
        why = survey.unreadable.get("version", "no answer")
        fail(f"cannot reach the cluster's API server: {why}")
    options = DeployOptions(namespace=targets.namespace, name=targets.name)
    seen = Observations(
        survey,
        (
            validating_webhook_configuration(policy, options),
            mutating_webhook_configuration(policy, options),
        ),
    )
    labels = survey.namespaces
    if namespaces.NAMESPACES in check_ids and labels is not None:
        enforcing = namespaces.enforcing(labels, policy)
        try:
            refused = namespaces.refusals(workloads_in(api, policy, enforcing), labels, policy)
            seen = _with(seen, refused=refused)
        except (ApiRejected, ApiUnreachable) as err:
            seen = _with(seen, refused_unreadable=str(err))
    if namespaces.GENERATED in check_ids:
        try:
            plan = Reconciler(api, FixedPolicy(policy)).preview()
            seen = _with(seen, plan=plan)
        except (ApiRejected, ApiUnreachable) as err:
            seen = _with(seen, plan_unreadable=str(err))
    diagnosis = diagnose(check_ids, seen, policy, targets, dt.datetime.now(dt.UTC))
    if flags["probe"]:
        diagnosis = Diagnosis((*diagnosis.results, _probe(api, flags)))
    _print(diagnosis, flags["output"])
    if diagnosis.problems:
        sys.exit(EXIT_DENIED)


def _probe(api: Any, flags: dict[str, Any]) -> Any:
    from webhook.cluster.enforcement_probe import EnforcementProbe
    from webhook.doctor.network_enforcement import probe_result

    click.echo(
        "probe: this writes (a scratch namespace with three pods and a NetworkPolicy, deleted "
        "afterwards)",
        err=True,
    )
    probe = EnforcementProbe(
        api,
        image=flags["probe_image"],
        timeout_s=flags["probe_timeout"],
        on_progress=lambda message: click.echo(message, err=True),
    )
    return probe_result(probe.run())


def _with(seen: Any, **changes: Any) -> Any:
    return replace(seen, **changes)


def _print(diagnosis: Diagnosis, output: str) -> None:
    if output == "json":
        click.echo(to_json(diagnosis.as_dict()))
        return
    if output == "yaml":
        click.echo(to_yaml(diagnosis.as_dict()), nl=False)
        return
    click.echo(table(diagnosis))


def table(diagnosis: Diagnosis) -> str:
    """kubectl-style: one row per check, then what to do about each one that is not ok."""
    rows = [("CHECK", "STATUS", "SUMMARY")]
    rows += [(r.check, r.status.value, r.summary) for r in diagnosis.results]
    width = [max(len(row[column]) for row in rows) for column in range(2)]
    lines = [f"{row[0]:<{width[0]}}   {row[1]:<{width[1]}}   {row[2]}" for row in rows]
    attention = sorted(
        (r for r in diagnosis.results if r.status is not Status.OK),
        key=lambda r: STATUS_ORDER[r.status],
    )
    for result in attention:
        lines += ["", f"{result.check} ({result.status.value}): {result.summary}"]
        lines += [f"  - {detail}" for detail in result.details]
        if result.fix:
            lines.append(f"  fix: {result.fix}")
    counts = ", ".join(
        f"{diagnosis.count(status)} {status.value}"
        for status in (Status.PROBLEM, Status.WARNING, Status.UNKNOWN, Status.OK)
    )
    lines += ["", f"{len(diagnosis.results)} checks: {counts}"]
    return "\n".join(lines)


COMMAND = doctor
