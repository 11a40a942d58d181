"""`egress-guard manifests`: the deployment, rendered from the policy file."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from webhook.cli.errors import fail
from webhook.cli.policy_option import config_option
from webhook.config.policy_file import PolicyFileError, parse_policy, read_policy_text
from webhook.config.yaml_text import dump_documents
from webhook.deploy.objects import DeployOptions, with_cert_manager
from webhook.deploy.tree import GENERATED, base_stream, deploy_tree

DEFAULTS = DeployOptions()


def _networks(values: tuple[str, ...]) -> tuple[str, ...]:
    """Each value as a network in CIDR notation (a bare address is that address alone)."""
    networks: list[str] = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value, strict=True)))
        except ValueError as err:
            raise click.BadParameter(f"{value!r} is not an address range ({err})") from None
    return tuple(networks)


@click.command()
@config_option
@click.option(
    "--namespace",
    default=DEFAULTS.namespace,
    show_default=True,
    help="Namespace egress-guard runs in (always excluded from its webhooks).",
)
@click.option("--image", default=DEFAULTS.image, show_default=True, help="Container image.")
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    help="Directory to write the Kustomize tree to, or - for one YAML stream on stdout.",
)
@click.option(
    "--cert-manager",
    is_flag=True,
    help="With -o -: certificates from cert-manager, caBundle from its CA injector.",
)
@click.option(
    "--api-server-cidr",
    "api_server_cidrs",
    multiple=True,
    callback=lambda _ctx, _param, values: _networks(values),
    help="Address range of the API server's endpoints (`kubectl get endpoints kubernetes`), "
    "the only place egress-guard's pods may reach besides DNS. Repeatable [default: any "
    "address, on ports 443 and 6443].",
)
def manifests(
    *,
    config: Path | None,
    namespace: str,
    image: str,
    output: str,
    cert_manager: bool,
    api_server_cidrs: tuple[str, ...],
) -> None:
    """Render the deployment (namespace, RBAC, policy ConfigMap, Deployment, PDB, Service and
    webhook configurations) from the policy file, so the label prefix the server reads and the
    one the webhooks select on always agree.

    \b
    egress-guard manifests --config policy.yaml | kubectl apply -f -
    egress-guard manifests --config policy.yaml -o deploy/ && kubectl apply -k deploy/
    """
    try:
        text, source = read_policy_text(config)
        policy = parse_policy(text, source)
    except PolicyFileError as err:
        fail(str(err))
    options = DeployOptions(namespace=namespace, image=image, api_server_cidrs=api_server_cidrs)
    try:
        if output == "-":
            objects = base_stream(policy, text, options)
            if cert_manager:
                objects = with_cert_manager(objects, options)
            click.echo(dump_documents(objects, GENERATED), nl=False)
        else:
            if cert_manager:
                fail("the tree always holds components/cert-manager; --cert-manager is for -o -")
            files = deploy_tree(policy, text, options)
            root = Path(output)
            for item in files:
                path = root / item.path
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(dump_documents(item.documents, f"{item.comment}\n{GENERATED}"))
            click.echo(f"wrote {len(files)} files to {root}/: kubectl apply -k {root}", err=True)
    except ValueError as err:
        fail(str(err))
    if namespace not in policy.exempt:
        click.echo(
            f"note: namespace {namespace} is not in the policy's exemptNamespaces; the webhook "
            "configurations exclude it anyway",
            err=True,
        )


COMMAND = manifests
