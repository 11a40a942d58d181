"""`egress-guard manifests`: the deployment, rendered from the policy file."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from webhook.cli.check_report import to_json
from webhook.cli.errors import check_directory, describe_os_error, fail
from webhook.cli.policy_option import config_option
from webhook.config.policy_file import PolicyFileError, parse_policy, read_policy_text
from webhook.config.yaml_text import dump_documents
from webhook.deploy.objects import DeployFile, DeployOptions, with_cert_manager
from webhook.deploy.tree import GENERATED, base_stream, deploy_tree

DEFAULTS = DeployOptions()
FORMATS = ("yaml", "json")


def _format(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """`-o` is a format, as in kubectl; `-o DIR` (as before) is told where the tree goes now."""
    if value == "-":
        return "yaml"
    if value not in FORMATS:
        raise click.BadParameter(
            f"{value!r} is not a format ({', '.join(FORMATS)}): write the Kustomize tree with "
            f"--output-dir {value}"
        )
    return value


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
    "-n",
    "--namespace",
    default=DEFAULTS.namespace,
    show_default=True,
    help="Namespace egress-guard runs in (always excluded from its webhooks).",
)
@click.option("--image", default=DEFAULTS.image, show_default=True, help="Container image.")
@click.option(
    "-o",
    "--output",
    default="yaml",
    show_default=True,
    callback=_format,
    metavar="yaml|json",
    help="Format of the objects on standard output: one YAML stream, or a JSON List.",
)
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path),
    help="Write the Kustomize tree here instead (kubectl apply -k DIR) [default: none, print].",
)
@click.option(
    "--cert-manager",
    is_flag=True,
    help="Certificates from cert-manager, caBundle from its CA injector (the tree always has "
    "components/cert-manager) [default: off, self-managed certificates].",
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
    output_dir: Path | None,
    cert_manager: bool,
    api_server_cidrs: tuple[str, ...],
) -> None:
    """Render the deployment (namespace, RBAC, policy ConfigMap, Deployment, PDB, Service and
    webhook configurations) from the policy file, so the label prefix the server reads and the
    one the webhooks select on always agree.

    \b
    egress-guard manifests --config policy.yaml | kubectl apply -f -
    egress-guard manifests --config policy.yaml --output-dir deploy/ && kubectl apply -k deploy/
    """
    try:
        text, source = read_policy_text(config)
        policy = parse_policy(text, source)
    except PolicyFileError as err:
        fail(str(err))
    options = DeployOptions(namespace=namespace, image=image, api_server_cidrs=api_server_cidrs)
    try:
        if output_dir is None:
            objects = base_stream(policy, text, options)
            if cert_manager:
                objects = with_cert_manager(objects, options)
            if output == "json":
                click.echo(to_json({"apiVersion": "v1", "kind": "List", "items": list(objects)}))
            else:
                click.echo(dump_documents(objects, GENERATED), nl=False)
        else:
            if cert_manager:
                fail("the tree always holds components/cert-manager; --cert-manager prints")
            write_tree(deploy_tree(policy, text, options), output_dir)
    except ValueError as err:
        fail(str(err))
    if namespace not in policy.exempt:
        click.echo(
            f"note: namespace {namespace} is not in the policy's exemptNamespaces; the webhook "
            "configurations exclude it anyway",
            err=True,
        )


def write_tree(files: list[DeployFile], root: Path) -> None:
    """The tree's files under `root`; one line and exit 2 on a path that cannot be written."""
    check_directory(root, "--output-dir")
    try:
        for item in files:
            path = root / item.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(dump_documents(item.documents, f"{item.comment}\n{GENERATED}"))
    except OSError as err:
        fail(
            f"cannot write the tree: {describe_os_error(err)}: "
            "give --output-dir a writable directory"
        )
    click.echo(f"wrote {len(files)} files to {root}/: kubectl apply -k {root}", err=True)


COMMAND = manifests
