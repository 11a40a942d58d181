"""`egress-guard certs`: certificates for serving the webhook, and the caBundle that trusts them."""

from __future__ import annotations

from pathlib import Path

import click

from webhook.cli.errors import describe_os_error, fail
from webhook.core.kube_names import service_dns_names
from webhook.serving.certs import (
    CertError,
    CertFiles,
    CertStatus,
    RollStep,
    ensure_certs,
    read_ca_bundle,
    roll_ca,
)

OUT_OPTION = click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("certs"),
    show_default=True,
    help="Certificate directory.",
)


@click.group()
def certs() -> None:
    """Certificates for serving the webhook (self-managed; see certs/README.md for cert-manager)."""


@certs.command("generate")
@click.option(
    "--service",
    default="egress-guard",
    show_default=True,
    help="Service name the API server calls.",
)
@click.option(
    "-n",
    "--namespace",
    default="egress-guard",
    show_default=True,
    help="Namespace of that Service.",
)
@OUT_OPTION
@click.option(
    "--dns", multiple=True, help="Extra DNS name for the certificate (repeatable) [default: none]."
)
@click.option(
    "--ip", multiple=True, help="Extra IP address for the certificate (repeatable) [default: none]."
)
@click.option("--renew", is_flag=True, help="Issue a new serving certificate even if current.")
def certs_generate(
    *,
    service: str,
    namespace: str,
    out: Path,
    dns: tuple[str, ...],
    ip: tuple[str, ...],
    renew: bool,
) -> None:
    """Create or renew ca.crt, tls.crt and tls.key (keys 0600) in OUT.

    A valid CA is kept (so the caBundle stays valid); the serving certificate is renewed when it
    expires within 30 days, when its names differ from those asked for, or with --renew. A
    running server picks renewed files up within seconds, without a restart.
    """
    try:
        result = ensure_certs(
            out, [*service_dns_names(service, namespace), *dns], list(ip), renew=renew
        )
    except CertError as err:
        fail(str(err))
    except OSError as err:
        fail(
            f"cannot write certificates: {describe_os_error(err)}: give --out a writable directory"
        )
    click.echo(
        f"CA:                  {result.files.ca_cert} ({result.ca.value}, "
        f"valid until {result.ca_not_after:%Y-%m-%d})"
    )
    click.echo(
        f"serving certificate: {result.files.tls_cert} ({result.leaf.value}, "
        f"valid until {result.not_after:%Y-%m-%d})"
    )
    click.echo(f"caBundle:            {result.files.trusted_bundle()}")
    if result.ca is CertStatus.GENERATED:
        click.echo("the CA is new: run `egress-guard certs inject-ca` (or update caBundle)")
    elif result.ca_needs_roll:
        click.echo(
            f"the CA expires on {result.ca_not_after:%Y-%m-%d}: roll it with "
            "`egress-guard certs roll-ca begin`",
            err=True,
        )


@certs.command("client")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("certs/client"),
    show_default=True,
    help="Directory for the client CA and the client certificate.",
)
@click.option(
    "--common-name", default="kube-apiserver", show_default=True, help="The client's name."
)
def certs_client(out: Path, common_name: str) -> None:
    """A client CA and a client certificate for the API server (webhook client authentication).

    Serve with --client-ca-file OUT/client-ca.crt; give the API server OUT/client.crt and
    OUT/client.key in its AdmissionConfiguration's kubeconfig (see README, "Client
    authentication").
    """
    from webhook.serving.certs import write_client_certs

    try:
        ca, cert, key = write_client_certs(out, common_name)
    except OSError as err:
        fail(
            f"cannot write certificates: {describe_os_error(err)}: give --out a writable directory"
        )
    click.echo(f"client CA {ca}; client certificate {cert}, key {key}")


@certs.command("roll-ca")
@click.argument("step", type=click.Choice([s.value for s in RollStep]))
@OUT_OPTION
def certs_roll_ca(step: str, out: Path) -> None:
    """Replace the CA without a moment of distrust, in three steps.

    \b
    begin    add a next CA to ca-bundle.crt; then run `certs inject-ca`
    promote  sign the serving certificate with the next CA (the bundle keeps the old one)
    finish   drop the old CA from ca-bundle.crt; then run `certs inject-ca`
    """
    try:
        click.echo(roll_ca(out, RollStep(step)))
    except CertError as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot roll the CA: {describe_os_error(err)}: give --out the certificate directory")


@certs.command("inject-ca")
@OUT_OPTION
@click.option(
    "--bundle",
    type=click.Path(path_type=Path, dir_okay=False),
    help="PEM file of CA certificates [default: OUT/ca-bundle.crt, else OUT/ca.crt].",
)
@click.option(
    "--name",
    "names",
    multiple=True,
    default=("egress-guard",),
    show_default=True,
    help="Mutating/ValidatingWebhookConfiguration name (repeatable).",
)
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Kubeconfig file to use [default: $KUBECONFIG, else ~/.kube/config].",
)
@click.option("--context", "kube_context", help="Kubeconfig context [default: current].")
@click.option("--dry-run", is_flag=True, help="Ask the API server to check, change nothing.")
def certs_inject_ca(
    *,
    out: Path,
    bundle: Path | None,
    names: tuple[str, ...],
    kubeconfig: Path | None,
    kube_context: str | None,
    dry_run: bool,
) -> None:
    """Set caBundle on every webhook of egress-guard's webhook configurations.

    Uses the in-cluster service account inside a pod, the kubeconfig otherwise. Webhooks whose
    caBundle already matches are left alone.
    """
    from webhook.cluster.webhook_configs import (  # the Kubernetes client loads only here
        WebhookConfigError,
        inject_ca_bundle,
    )

    path = bundle or CertFiles(out).trusted_bundle()
    try:
        pem = read_ca_bundle(path)
    except CertError as err:
        fail(str(err))
    try:
        results = inject_ca_bundle(
            pem, names, kubeconfig=kubeconfig, context=kube_context, dry_run=dry_run
        )
    except WebhookConfigError as err:
        fail(str(err))
    suffix = " (dry run)" if dry_run else ""
    for result in results:
        state = "updated" if result.changed else "already current"
        click.echo(
            f"{result.kind}/{result.name}: caBundle {state} on {len(result.webhooks)} "
            f"webhook(s){suffix}"
        )


COMMAND = certs
