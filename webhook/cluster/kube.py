"""The cluster layer on the official Kubernetes client, wired for the admission controller.

`connect()` is imported lazily by the composition root, so that running without a cluster (local
`serve --cluster none`, the offline CLI) never loads the Kubernetes client.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client

from webhook.admission.ports import PolicySource
from webhook.cluster.applier import ENSURE_BUDGET_S, ClusterPolicyApplier
from webhook.cluster.client import CLUSTER_KINDS, ClusterConfigError, api_client
from webhook.cluster.namespaces import LOOKUP_BUDGET_S, NamespaceCache
from webhook.cluster.policy_writer import PolicyWriter

__all__ = ["ClusterConfigError", "ClusterConnection", "connect"]


@dataclass(frozen=True, slots=True)
class ClusterConnection:
    """What the admission controller is handed when there is a cluster."""

    api: client.ApiClient
    namespaces: NamespaceCache
    applier: ClusterPolicyApplier

    def close(self) -> None:
        self.namespaces.stop()
        self.api.close()  # type: ignore[no-untyped-call]


def connect(
    mode: str,
    policies: PolicySource,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    lookup_budget_s: float = LOOKUP_BUDGET_S,
    ensure_budget_s: float = ENSURE_BUDGET_S,
) -> ClusterConnection:
    """Namespace labels (watched) and NetworkPolicy ensuring, on the cluster `mode` names.

    Raises ClusterConfigError when there are no usable credentials. The API server itself is not
    called here: a cluster that is down at start-up is reported by the first lookups, and the
    namespace watch keeps trying in the background.
    """
    if mode not in CLUSTER_KINDS:
        raise ClusterConfigError(f"cluster mode {mode!r} is not one of {', '.join(CLUSTER_KINDS)}")
    api = api_client(mode, kubeconfig=kubeconfig, context=context)
    namespaces = NamespaceCache(api, lookup_budget_s=lookup_budget_s)
    namespaces.start()
    applier = ClusterPolicyApplier(PolicyWriter(api), policies, budget_s=ensure_budget_s)
    return ClusterConnection(api, namespaces, applier)
