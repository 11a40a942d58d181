"""The Kubernetes client egress-guard talks through: in-cluster credentials or a kubeconfig.

The client's own retries are switched off: urllib3 would otherwise retry a refused or timed-out
call three times, quadrupling the time an admission waits. Callers retry what is worth retrying
(a resourceVersion conflict), within their own time budget.
"""

from __future__ import annotations

import os

from kubernetes import client, config

from webhook import __version__
from webhook.config.settings import ClusterKind

POOL_SIZE = 16
"""Connections kept to the API server per process: enough for a worker's threads at once."""


class ClusterConfigError(Exception):
    """No usable credentials for the cluster (no service account, no kubeconfig, bad context)."""


def api_client(
    mode: ClusterKind, *, kubeconfig: str | None = None, context: str | None = None
) -> client.ApiClient:
    """A client for the cluster: the pod's service account, or a kubeconfig (`kubeconfig`, else
    $KUBECONFIG read now rather than when the client was imported, else ~/.kube/config)."""
    configuration = client.Configuration()
    try:
        if mode == "in-cluster":
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig or os.environ.get("KUBECONFIG") or None,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (config.ConfigException, OSError, TypeError, ValueError) as err:
        where = "the pod's service account" if mode == "in-cluster" else "the kubeconfig"
        raise ClusterConfigError(f"cannot use {where} to reach the cluster: {err}") from None
    configuration.retries = False
    configuration.connection_pool_maxsize = POOL_SIZE
    api = client.ApiClient(configuration)
    api.user_agent = f"egress-guard/{__version__}"
    return api
