"""The cluster layer on the official Kubernetes client, wired for the admission controller.

`connect()` is imported lazily by the composition root, so that running without a cluster (local
`serve --cluster none`, the offline CLI) never loads the Kubernetes client.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from kubernetes import client

from webhook.admission.budgets import NAMESPACE_LOOKUP_BUDGET_S, NETWORK_POLICY_ENSURE_BUDGET_S
from webhook.admission.ports import PolicySource
from webhook.cluster.client import ClusterConfigError, api_client
from webhook.cluster.egress_object_applier import ClusterEgressObjectApplier
from webhook.cluster.egress_object_writer import EgressObjectWriter, KindCalls
from webhook.cluster.list_watch import ListWatch
from webhook.cluster.namespaces import STALE_AFTER_S, NamespaceCache
from webhook.config.settings import CLUSTER_KINDS
from webhook.core.backends import kinds_of
from webhook.core.network_policies import MANAGED_BY, MANAGED_BY_LABEL

__all__ = ["ClusterConfigError", "ClusterConnection", "connect"]


@dataclass(frozen=True, slots=True)
class ClusterConnection:
    """What the admission controller is handed when there is a cluster."""

    api: client.ApiClient
    namespaces: NamespaceCache
    network_policies: ClusterEgressObjectApplier
    watches: tuple[ListWatch, ...]
    """One per generated kind of the policy's backends, so that the applier's memory stays
    honest."""

    def not_ready(self) -> str | None:
        """Why admissions cannot be answered as they should now (None: ready)."""
        problem = self.namespaces.not_ready()
        for watch in self.watches:
            if problem is None and not watch.synced.is_set():
                problem = f"the {watch.what} are not listed yet ({watch.problem})"
        return problem

    def warnings(self) -> tuple[str, ...]:
        """What is wrong without making the webhook unready: a backend's kind the cluster does
        not serve (enforcing namespaces that use it refuse their workloads, saying so)."""
        return tuple(
            f"{watch.what}: {watch.absent_why}; enforcing namespaces using its backend refuse "
            "new workloads"
            for watch in self.watches
            if watch.absent
        )

    def synced(self, timeout_s: float) -> bool:
        """Wait for every watch's first list: the namespaces' and each generated kind's."""
        watched = (self.namespaces.synced, *(watch.synced for watch in self.watches))
        return all(event.wait(timeout_s) for event in watched)

    def close(self) -> None:
        for watch in self.watches:
            watch.stop()
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
    """Namespace labels (watched) and egress-object ensuring, on the cluster `mode` names.

    Raises ClusterConfigError when there are no usable credentials. The API server itself is not
    called here: a cluster that is down at start-up is reported by the first lookups (and by
    readiness), and the watches keep trying in the background. `stale_after_s` bounds how long
    what the watches delivered is relied on while they are down (default STALE_AFTER_S). The
    generated kinds watched are those of the policy's backends at start-up.
    """
    if mode not in CLUSTER_KINDS:
        raise ClusterConfigError(f"cluster mode {mode!r} is not one of {', '.join(CLUSTER_KINDS)}")
    bound = STALE_AFTER_S if stale_after_s is None else stale_after_s
    api = api_client(mode, kubeconfig=kubeconfig, context=context)
    namespaces = NamespaceCache(api, policies, lookup_budget_s=lookup_budget_s, stale_after_s=bound)
    applier = ClusterEgressObjectApplier(
        EgressObjectWriter(api), policies, namespaces, budget_s=ensure_budget_s
    )
    namespaces.add_listener(applier.namespace_changed)
    kinds = kinds_of(policies.current().backend_set)
    watches = tuple(
        ListWatch(
            f"generated {kind.qualified}",
            KindCalls(api, kind).list_all_namespaces(),
            on_list=functools.partial(applier.objects_listed, kind=kind),
            on_event=functools.partial(applier.object_event, kind=kind),
            label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}",
            may_be_absent=kind.custom,
        )
        for kind in kinds
    )
    by_kind = dict(zip(kinds, watches, strict=True))
    applier.watching(lambda kind: kind in by_kind and not by_kind[kind].absent)
    applier.trust(lambda: all(watch.trusted(bound) for watch in watches))
    namespaces.start()
    for watch in watches:
        watch.start()
    return ClusterConnection(api, namespaces, applier, watches)
