"""The `egress-guard` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from webhook import __version__
from webhook.config.policy_file import PolicyFileError, load_policy
from webhook.config.settings import ServeSettings
from webhook.serving.certs import (
    LOCAL_DNS,
    LOCAL_IPS,
    CertFiles,
    CertStatus,
    ensure_certs,
    service_dns_names,
)

EXIT_USAGE = 2
"""Usage and input errors, as click itself uses: CI tells them from a denial (1)."""


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="egress-guard")
def main() -> None:
    """egress-guard: every workload declares what it may reach, and egress is made to obey."""


@main.command()
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    help="Policy file [default: the embedded example].",
)
@click.option("--host", help="Address to listen on [default: 127.0.0.1; in a pod, 0.0.0.0].")
@click.option("--port", type=int, help="Port to listen on [default: 8443].")
@click.option(
    "--cert-dir",
    type=click.Path(path_type=Path),
    help="tls.crt/tls.key here; generated with a local CA when absent [default: certs].",
)
@click.option("--workers", type=int, help="gunicorn worker processes [default: 2].")
@click.option("--threads", type=int, help="Threads per worker [default: 4].")
@click.option(
    "--cluster",
    type=click.Choice(["auto", "none", "in-cluster", "kubeconfig"]),
    help="Where namespace labels come from and policies go [default: auto].",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(**flags: Any) -> None:
    """Run the webhook: HTTPS on gunicorn, /validate and /mutate, /healthz and /readyz.

    Every flag may also be set as an EGRESS_GUARD_* environment variable (EGRESS_GUARD_PORT=9443).
    """
    from webhook.serving.server import run  # gunicorn loads only for this command

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
        result = ensure_certs(
            settings.cert_dir,
            [*LOCAL_DNS, *service_dns_names(settings.service, settings.namespace)],
            LOCAL_IPS,
        )
        click.echo(
            f"generated a local CA and serving certificate in {settings.cert_dir}/ "
            f"(CA {result.ca.value}); trust {certs.ca_cert} to call the webhook",
            err=True,
        )
    scheme_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    click.echo(
        f"egress-guard {__version__} serving https://{scheme_host}:{settings.port} "
        f"(policy: {settings.config or 'embedded example'}; CA: {certs.ca_cert})",
        err=True,
    )
    run(settings, certs)


@main.group()
def certs() -> None:
    """Certificates for serving the webhook."""


@certs.command("generate")
@click.option(
    "--service",
    default="egress-guard",
    show_default=True,
    help="Service name the API server calls.",
)
@click.option(
    "--namespace", default="egress-guard", show_default=True, help="Namespace of that Service."
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("certs"), show_default=True)
@click.option("--dns", multiple=True, help="Extra DNS name for the certificate (repeatable).")
@click.option("--ip", multiple=True, help="Extra IP address for the certificate (repeatable).")
def certs_generate(
    service: str, namespace: str, out: Path, dns: tuple[str, ...], ip: tuple[str, ...]
) -> None:
    """Create or renew ca.crt, tls.crt and tls.key (keys 0600) in OUT.

    A valid CA is kept (so the caBundle stays valid); the serving certificate is renewed when it
    expires within 30 days or lacks a name asked for.
    """
    try:
        result = ensure_certs(out, [*service_dns_names(service, namespace), *dns], list(ip))
    except ValueError as err:
        fail(str(err))
    click.echo(f"CA:                  {result.files.ca_cert} ({result.ca.value})")
    click.echo(
        f"serving certificate: {result.files.tls_cert} ({result.leaf.value}, "
        f"valid until {result.not_after:%Y-%m-%d})"
    )
    if result.ca is CertStatus.GENERATED:
        click.echo("the CA is new: update caBundle in the webhook configurations")
