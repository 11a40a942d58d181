"""A namespace's workloads from the Kubernetes API, for the namespace preview.

Labelling a namespace is answered while the API server waits, so the listing is bounded: at most
`limit` objects per kind, all kinds within one time budget. What does not fit is reported as an
incomplete listing (the preview says so) rather than slowing the `kubectl label` down. Owners are
listed before what they own, so a cut-off listing still holds the objects the preview names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from webhook.admission.budgets import WORKLOAD_LIST_BUDGET_S
from webhook.admission.ports import PolicySource, WorkloadListing, WorkloadsUnavailable
from webhook.cluster.api_calls import ApiRejected, ApiUnreachable, Deadline, call_json
from webhook.cluster.workload_lists import namespaced_lister
from webhook.core.raw_object import JsonObject
from webhook.core.workloads import BUILTIN_KINDS, WorkloadKind

PER_KIND_LIMIT = 500


class KubeWorkloadSource:
    """Lists a namespace's workloads of every kind the policy reviews (`Policy.reviewed_kinds`:
    its workloadKinds, then Deployments, StatefulSets, DaemonSets, CronJobs, Jobs,
    ReplicationControllers, ReplicaSets and Pods), in that order."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        policies: PolicySource | None = None,
        budget_s: float = WORKLOAD_LIST_BUDGET_S,
        limit: int = PER_KIND_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._policies = policies
        self.budget_s = budget_s
        self.limit = limit
        self._clock = clock

    def kinds(self) -> tuple[WorkloadKind, ...]:
        """The kinds listed: the current policy's (the built-in ones without a policy)."""
        return self._policies.current().reviewed_kinds if self._policies else BUILTIN_KINDS

    @property
    def lists(self) -> tuple[tuple[str, str, Callable[..., Any]], ...]:
        """(kind, apiVersion, list call) for each kind listed."""
        return tuple(
            (kind.kind, kind.api_version, namespaced_lister(self._api, kind))
            for kind in self.kinds()
        )

    def workloads(self, namespace: str) -> WorkloadListing:
        deadline = Deadline(self.budget_s, self._clock)
        found: list[JsonObject] = []
        complete = True
        listed = 0
        failures: list[str] = []
        for kind, api_version, method in self.lists:
            try:
                page = call_json(method, namespace, timeout=deadline.timeout(), limit=self.limit)
            except ApiRejected as err:  # e.g. no RBAC to list this kind: report the others
                failures.append(f"listing {kind}s: {err}")
                complete = False
                continue
            except ApiUnreachable as err:
                if not listed:
                    raise WorkloadsUnavailable(str(err)) from None
                complete = False
                break
            listed += 1
            if (page.get("metadata") or {}).get("continue"):
                complete = False
            for item in page.get("items") or ():
                if isinstance(item, dict):
                    item.setdefault("kind", kind)
                    item.setdefault("apiVersion", api_version)
                    found.append(item)
        if not listed:
            raise WorkloadsUnavailable("; ".join(failures[:2]))
        return WorkloadListing(tuple(found), complete)
