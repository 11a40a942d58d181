"""`egress-guard certs`: certificates for serving the webhook."""

from __future__ import annotations

from pathlib import Path

import click

from webhook.cli.errors import fail
from webhook.serving.certs import CertStatus, ensure_certs, service_dns_names


@click.group()
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


COMMAND = certs
