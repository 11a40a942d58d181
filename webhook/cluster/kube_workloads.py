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

from webhook.admission.ports import WorkloadListing, WorkloadsUnavailable
from webhook.cluster.api_calls import ApiRejected, ApiUnreachable, Deadline, JsonObject, call_json

LIST_BUDGET_S = 2.0
"""Within the webhook's own timeout, with room to answer."""
PER_KIND_LIMIT = 500


class KubeWorkloadSource:
    """Lists a namespace's Deployments, StatefulSets, DaemonSets, CronJobs, Jobs,
    ReplicationControllers, ReplicaSets and Pods, in that order."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        budget_s: float = LIST_BUDGET_S,
        limit: int = PER_KIND_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
        self.lists: tuple[tuple[str, str, Callable[..., Any]], ...] = (
            ("Deployment", "apps/v1", apps.list_namespaced_deployment),
            ("StatefulSet", "apps/v1", apps.list_namespaced_stateful_set),
            ("DaemonSet", "apps/v1", apps.list_namespaced_daemon_set),
            ("CronJob", "batch/v1", batch.list_namespaced_cron_job),
            ("Job", "batch/v1", batch.list_namespaced_job),
            ("ReplicationController", "v1", core.list_namespaced_replication_controller),
            ("ReplicaSet", "apps/v1", apps.list_namespaced_replica_set),
            ("Pod", "v1", core.list_namespaced_pod),
        )
        self.budget_s = budget_s
        self.limit = limit
        self._clock = clock

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
