"""The credentials options of the commands that talk to a cluster, and the client they give."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from webhook.cli.errors import fail
from webhook.config.settings import CLUSTER_MODES, resolve_cluster_mode

F = TypeVar("F", bound=Callable[..., Any])


def cluster_options(command: F) -> F:
    """`--cluster`, `--kubeconfig` and `--context`, as every cluster command takes them."""
    options = (
        click.option(
            "--cluster",
            type=click.Choice([mode for mode in CLUSTER_MODES if mode != "none"]),
            default="auto",
            show_default=True,
            envvar="EGRESS_GUARD_CLUSTER",
            help="Credentials: the pod's service account, or a kubeconfig.",
        ),
        click.option(
            "--kubeconfig", type=click.Path(path_type=Path), help="Kubeconfig file to use."
        ),
        click.option("--context", help="Kubeconfig context to use."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def api_client_or_exit(flags: dict[str, Any]) -> Any:
    """A Kubernetes client from the credentials options, or exit 2 saying why not."""
    from webhook.cluster.client import ClusterConfigError, api_client

    mode = resolve_cluster_mode(
        flags["cluster"], kubeconfig=flags["kubeconfig"], context=flags["context"]
    )
    if mode == "none":
        fail("no cluster found: run in a pod, or pass --kubeconfig (or set KUBECONFIG)")
    try:
        return api_client(
            mode,
            kubeconfig=str(flags["kubeconfig"]) if flags["kubeconfig"] else None,
            context=flags["context"],
        )
    except ClusterConfigError as err:
        fail(str(err))
