"""`egress-guard serve`: the webhook over HTTPS."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from webhook import __version__
from webhook.cli.errors import describe_os_error, fail
from webhook.cli.policy_option import config_option
from webhook.config.policy_file import PolicyFileError, load_policy
from webhook.config.settings import CLUSTER_MODES, ServeSettings, resolve_cluster_mode
from webhook.core.kube_names import service_dns_names
from webhook.serving.certs import (
    LOCAL_DNS,
    LOCAL_IPS,
    CertError,
    CertFiles,
    check_serving_files,
    ensure_certs,
)
from webhook.serving.healthcheck import write_url_file


@click.command()
@config_option
@click.option(
    "--host",
    help="Address to listen on [default: 127.0.0.1; the image sets EGRESS_GUARD_HOST=0.0.0.0].",
)
@click.option("--port", type=int, help="Port to listen on [default: 8443].")
@click.option(
    "--cert-dir",
    type=click.Path(path_type=Path),
    help="tls.crt/tls.key here; generated with a local CA when absent [default: certs].",
)
@click.option("--workers", type=int, help="gunicorn worker processes [default: 2].")
@click.option("--threads", type=int, help="Threads per worker [default: 2].")
@click.option(
    "--cluster",
    type=click.Choice(CLUSTER_MODES),
    help="Where namespace labels come from and policies go [default: auto].",
)
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Kubeconfig file to use [default: $KUBECONFIG, else ~/.kube/config].",
)
@click.option("--context", help="Kubeconfig context to use [default: the current one].")
@click.option(
    "--worker-tmp-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="gunicorn's worker heartbeat files [default: /dev/shm when present].",
)
@click.option(
    "--client-ca-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Accept reviews only from clients with a certificate from this CA (the API server's, "
    "set in its AdmissionConfiguration); probes and /metrics need none [default: none, any "
    "client].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least severe log record written [default: info].",
)
def serve(**flags: Any) -> None:
    """Run the webhook: HTTPS on gunicorn, /validate and /mutate, /healthz and /readyz.

    Every flag may also be set as an EGRESS_GUARD_* environment variable (EGRESS_GUARD_PORT=9443).
    """
    from webhook.serving.metrics_dir import multiprocess_dir

    try:
        settings = ServeSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as err:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()))
    try:
        load_policy(settings.config)
    except PolicyFileError as err:
        fail(str(err))
    certs = CertFiles(settings.cert_dir)
    if not (certs.tls_cert.is_file() and certs.tls_key.is_file()):
        try:
            result = ensure_certs(
                settings.cert_dir,
                [*LOCAL_DNS, *service_dns_names(settings.service, settings.namespace)],
                LOCAL_IPS,
            )
        except (CertError, OSError) as err:
            fail(
                f"no certificate in {settings.cert_dir}/ and none can be generated there "
                f"({describe_os_error(err)}): mount tls.crt and tls.key there, or set --cert-dir "
                "(EGRESS_GUARD_CERT_DIR) to a writable directory"
            )
        click.echo(
            f"generated a local CA and serving certificate in {settings.cert_dir}/ "
            f"(CA {result.ca.value}); trust {certs.ca_cert} to call the webhook",
            err=True,
        )
    try:
        check_serving_files(certs)
    except CertError as err:
        fail(f"cannot serve with the certificate in {settings.cert_dir}/: {err}")
    if settings.healthcheck_file is not None:
        try:
            write_url_file(settings.healthcheck_file, settings.host, settings.port)
        except OSError as err:
            fail(f"cannot write the health check file: {describe_os_error(err)}")
    _check_cluster(settings)
    _check_port_free(settings.host, settings.port)
    scheme_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    announcement = (
        f"egress-guard {__version__} serving https://{scheme_host}:{settings.port} "
        f"(policy: {settings.config or 'embedded example'}; CA: {certs.ca_cert})"
    )
    with multiprocess_dir(), policy_snapshot() as snapshot:  # before prometheus_client loads
        from webhook.serving.server import run  # gunicorn loads only for this command

        run(
            settings.model_copy(update={"policy_snapshot": snapshot}),
            certs,
            when_listening=lambda: click.echo(announcement, err=True),
        )


def _check_cluster(settings: ServeSettings) -> None:
    """Credentials that cannot be used fail here, once, before any worker starts (each worker
    would otherwise print the same error and exit)."""
    mode = resolve_cluster_mode(
        settings.cluster, kubeconfig=settings.kubeconfig, context=settings.context
    )
    if mode == "none":
        return
    from webhook.cluster.client import ClusterConfigError, api_client

    try:
        api_client(
            mode,
            kubeconfig=str(settings.kubeconfig) if settings.kubeconfig else None,
            context=settings.context,
        ).close()  # type: ignore[no-untyped-call]
    except ClusterConfigError as err:
        fail(f"{err}; or run with --cluster none")


def _check_port_free(host: str, port: int) -> None:
    """A port in use fails here, at once, rather than after gunicorn's five retries."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as err:
            fail(f"cannot listen on {host}:{port}: {describe_os_error(err)} (another server?)")


@contextlib.contextmanager
def policy_snapshot() -> Iterator[Path]:
    """A private file where the workers keep the last good policy, removed when serving ends."""
    directory = Path(tempfile.mkdtemp(prefix="egress-guard-policy-"))
    owner = os.getpid()
    try:
        yield directory / "last-good.yaml"  # the first worker to load the policy writes it
    finally:
        if os.getpid() == owner:  # not a worker exiting: it is a fork of this process
            shutil.rmtree(directory, ignore_errors=True)


COMMAND = serve
