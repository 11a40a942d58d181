"""The cluster layer on the official Kubernetes client, wired for the admission controller.

`connect()` is imported lazily by the composition root, so that running without a cluster (local
`serve --cluster none`, the offline CLI) never loads the Kubernetes client.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client

from webhook.admission.budgets import NAMESPACE_LOOKUP_BUDGET_S, NETWORK_POLICY_ENSURE_BUDGET_S
from webhook.admission.ports import PolicySource
from webhook.cluster.client import ClusterConfigError, api_client
from webhook.cluster.list_watch import ListWatch
from webhook.cluster.namespaces import STALE_AFTER_S, NamespaceCache
from webhook.cluster.network_policy_applier import ClusterNetworkPolicyApplier
from webhook.cluster.network_policy_writer import NetworkPolicyWriter
from webhook.config.settings import CLUSTER_KINDS
from webhook.core.network_policies import MANAGED_BY, MANAGED_BY_LABEL

__all__ = ["ClusterConfigError", "ClusterConnection", "connect"]


@dataclass(frozen=True, slots=True)
class ClusterConnection:
    """What the admission controller is handed when there is a cluster."""

    api: client.ApiClient
    namespaces: NamespaceCache
    network_policies: ClusterNetworkPolicyApplier
    network_policy_watch: ListWatch
    """The generated NetworkPolicies, watched so that the applier's memory stays honest."""

    def not_ready(self) -> str | None:
        """Why admissions cannot be answered as they should now (None: ready)."""
        problem = self.namespaces.not_ready()
        if problem is None and not self.network_policy_watch.synced.is_set():
            watch = self.network_policy_watch
            problem = f"the generated NetworkPolicies are not listed yet ({watch.problem})"
        return problem

    def close(self) -> None:
        self.network_policy_watch.stop()
        self.namespaces.stop()
        self.api.close()  # type: ignore[no-untyped-call]


def connect(
    mode: str,
    policies: PolicySource,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    lookup_budget_s: float = NAMESPACE_LOOKUP_BUDGET_S,
    ensure_budget_s: float = NETWORK_POLICY_ENSURE_BUDGET_S,
    stale_after_s: float | None = None,
) -> ClusterConnection:
    """Namespace labels (watched) and NetworkPolicy ensuring, on the cluster `mode` names.

    Raises ClusterConfigError when there are no usable credentials. The API server itself is not
    called here: a cluster that is down at start-up is reported by the first lookups (and by
    readiness), and both watches keep trying in the background. `stale_after_s` bounds how long
    what the watches delivered is relied on while they are down (default STALE_AFTER_S).
    """
    if mode not in CLUSTER_KINDS:
        raise ClusterConfigError(f"cluster mode {mode!r} is not one of {', '.join(CLUSTER_KINDS)}")
    bound = STALE_AFTER_S if stale_after_s is None else stale_after_s
    api = api_client(mode, kubeconfig=kubeconfig, context=context)
    namespaces = NamespaceCache(api, policies, lookup_budget_s=lookup_budget_s, stale_after_s=bound)
    applier = ClusterNetworkPolicyApplier(
        NetworkPolicyWriter(api), policies, namespaces, budget_s=ensure_budget_s
    )
    namespaces.add_listener(applier.namespace_changed)
    network_policy_watch = ListWatch(
        "generated-networkpolicies",
        client.NetworkingV1Api(api).list_network_policy_for_all_namespaces,
        on_list=applier.network_policies_listed,
        on_event=applier.network_policy_event,
        label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}",
    )
    applier.trust(lambda: network_policy_watch.trusted(bound))
    namespaces.start()
    network_policy_watch.start()
    return ClusterConnection(api, namespaces, applier, network_policy_watch)
