"""One reconcile pass: read the cluster, plan with the pure core, carry the plan out.

Namespaces and the generated NetworkPolicies are read with one cluster-wide list each (the
latter selected by egress-guard's managed-by label). Workloads are read only where they matter:
one list per workload kind in each namespace whose NetworkPolicies egress-guard manages, never in
exempt or unmanaged namespaces, whose workloads can be many and change nothing here. Pods are
listed with a `<prefix>/profile` label selector, which is sound for Pods alone: a pod's own labels
are what its profile policy selects, and a pod without the label adds no profile (the
default-deny policy is wanted in a managed namespace whatever runs there). Other kinds are listed
whole, since a selector sees an object's own labels and their profile is on the pod template.

If any read fails the pass changes nothing: pruning on a partial picture would delete policies
that workloads still need. For the same reason a profile policy is pruned only when two
consecutive passes found it unused (see `plan.py`): workloads and policies are read a
moment apart, and a workload admitted in between has had its policy ensured by admission. A
namespace's opt-out, read from its labels, is pruned at once. Each write is bounded in time,
checked against `may_act` first (a leader that lost its lease stops), and a failed write is
reported without stopping the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from webhook.admission.ports import PolicySource
from webhook.cluster.api_calls import (
    ApiRejected,
    ApiUnreachable,
    Deadline,
    list_all,
)
from webhook.cluster.list_watch import LIST_TIMEOUT
from webhook.cluster.network_policy_writer import ForeignNetworkPolicy, NetworkPolicyWriter, Written
from webhook.cluster.workload_lists import namespaced_lister
from webhook.core.namespace import namespace_context
from webhook.core.network_policies import MANAGED_BY, MANAGED_BY_LABEL
from webhook.core.policy import Policy
from webhook.core.raw_object import JsonObject
from webhook.core.workloads import WorkloadKind, builtin_kind
from webhook.reconcile.plan import (
    NamespaceState,
    NetworkPolicyIdentity,
    ReconcilePlan,
    plan_reconcile,
    workload_profile,
)

log = logging.getLogger(__name__)

RECONCILE_WRITE_BUDGET_S = 10.0


@dataclass(slots=True)
class ReconcileReport:
    """What a pass found and did; `errors` empty means the cluster is as the policy says."""

    namespaces: int = 0
    managed: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    """Profile NetworkPolicies found unused for the first time: pruned next pass if still unused."""
    unchanged: int = 0
    refused: list[str] = field(default_factory=list)
    """Same-named NetworkPolicies egress-guard did not generate: left alone, and said."""
    errors: list[str] = field(default_factory=list)
    stopped: bool = False
    """The pass stopped early because this replica is no longer the leader."""

    def as_fields(self) -> dict[str, Any]:
        return {
            "namespaces": self.namespaces,
            "managedNamespaces": self.managed,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "kept": self.kept,
            "deferred": self.deferred,
            "unchanged": self.unchanged,
            "refused": self.refused,
            "errors": self.errors,
            "stoppedEarly": self.stopped,
        }

    def summary(self) -> str:
        return (
            f"{self.namespaces} namespaces ({self.managed} with NetworkPolicies): "
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.deleted)} deleted, {len(self.deferred)} deferred, {len(self.kept)} kept, "
            f"{self.unchanged} in place, {len(self.refused)} refused, {len(self.errors)} errors"
            + (" (stopped: no longer the leader)" if self.stopped else "")
        )


WorkloadLister = Callable[..., Any]


def _list_kind(
    kind: WorkloadKind, lister: WorkloadLister, namespace: str, label_selector: str | None
) -> list[JsonObject]:
    """Every object of a kind in a namespace. A custom kind from the policy's workloadKinds whose
    resource the cluster does not serve (404: its CRD is not installed) has no objects."""
    try:
        items, _ = list_all(lister, namespace, timeout=LIST_TIMEOUT, label_selector=label_selector)
    except ApiRejected as err:
        if err.not_found and builtin_kind(kind.group, kind.kind) is None:
            log.info("reconcile: %s is not served by this cluster: none listed", kind.qualified)
            return []
        raise
    return items


class Reconciler:
    def __init__(
        self,
        api: client.ApiClient,
        policies: PolicySource,
        *,
        prune: bool = True,
        write_budget_s: float = RECONCILE_WRITE_BUDGET_S,
    ) -> None:
        self._policies = policies
        self._prune = prune
        self._write_budget_s = write_budget_s
        self._writer = NetworkPolicyWriter(api)
        self._core = client.CoreV1Api(api)
        self._net = client.NetworkingV1Api(api)
        self._api = api
        self._unused: frozenset[NetworkPolicyIdentity] = frozenset()
        """Profile NetworkPolicies the last pass found unused (see the module docstring)."""

    def _workload_lists(self, policy: Policy) -> list[tuple[WorkloadKind, WorkloadLister]]:
        """A per-namespace list call for every kind the policy reviews (`Policy.reviewed_kinds`)."""
        return [(kind, namespaced_lister(self._api, kind)) for kind in policy.reviewed_kinds]

    def run_once(self, may_act: Callable[[], bool] = lambda: True) -> ReconcileReport:
        policy = self._policies.current()
        report = ReconcileReport()
        try:
            states, generated = self._read(policy, report)
        except (ApiUnreachable, ApiRejected) as err:
            self._unused = frozenset()  # the next pass is the first of two again
            report.errors.append(f"reading the cluster failed, nothing changed: {err}")
            log.warning("reconcile: %s", report.errors[-1])
            return report
        plan = plan_reconcile(
            policy, states, generated, prune=self._prune, unused_before=self._unused
        )
        self._unused = plan.unused
        report.unchanged = plan.in_place
        report.kept = [f"{namespace}/{name}" for namespace, name in plan.kept]
        report.deferred = [f"{namespace}/{name}" for namespace, name in plan.deferred]
        self._carry_out(plan, report, may_act)
        return report

    def _read(
        self, policy: Policy, report: ReconcileReport
    ) -> tuple[list[NamespaceState], list[JsonObject]]:
        namespaces, _ = list_all(self._core.list_namespace, timeout=LIST_TIMEOUT)
        labels_by_name: dict[str, Mapping[str, str]] = {}
        for item in namespaces:
            metadata = item.get("metadata") or {}
            if isinstance(metadata.get("name"), str):
                labels_by_name[metadata["name"]] = metadata.get("labels") or {}
        managed = {
            name
            for name, labels in labels_by_name.items()
            if namespace_context(name, labels, policy).inject.network_policies
        }
        report.namespaces, report.managed = len(labels_by_name), len(managed)
        generated, _ = list_all(
            self._net.list_network_policy_for_all_namespaces,
            timeout=LIST_TIMEOUT,
            label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}",
        )
        profiles: dict[str, set[str]] = {name: set() for name in managed}
        lists = self._workload_lists(policy) if managed else []
        for namespace in sorted(managed):
            for kind, lister in lists:
                pods = (kind.group, kind.kind) == ("", "Pod")
                selector = policy.profile_label if pods else None
                for item in _list_kind(kind, lister, namespace, selector):
                    profile = workload_profile(kind.kind, item, policy, kind.group)
                    if profile is not None:
                        profiles[namespace].add(profile)
        states = [
            NamespaceState(name, labels, frozenset(profiles.get(name, ())))
            for name, labels in labels_by_name.items()
        ]
        return states, generated

    def _carry_out(
        self, plan: ReconcilePlan, report: ReconcileReport, may_act: Callable[[], bool]
    ) -> None:
        steps: list[tuple[str, Mapping[str, Any], Mapping[str, Any] | None]] = [
            *(("ensure", desired, None) for desired in plan.creates),
            *(("ensure", update.desired, update.live) for update in plan.updates),
            *(("delete", live, None) for live in plan.deletes),
        ]
        for action, manifest, live in steps:
            if not may_act():
                report.stopped = True
                log.warning("reconcile: no longer the leader; stopping this pass")
                return
            metadata = manifest["metadata"]
            where = f"{metadata['namespace']}/{metadata['name']}"
            deadline = Deadline(self._write_budget_s)
            try:
                if action == "delete":
                    if self._writer.delete(manifest, deadline):
                        report.deleted.append(where)
                        log.info("reconcile: deleted NetworkPolicy %s", where)
                    continue
                result = self._writer.ensure(manifest, deadline, live=live)
            except ForeignNetworkPolicy as err:
                report.refused.append(where)
                log.warning("reconcile: %s", err)
                continue
            except (ApiUnreachable, ApiRejected) as err:
                report.errors.append(f"{where}: {err}")
                log.warning("reconcile: %s: %s", where, err)
                continue
            if result is Written.CREATED:
                report.created.append(where)
            elif result is Written.UPDATED:
                report.updated.append(where)
            else:
                report.unchanged += 1
            if result is not Written.UNCHANGED:
                log.info("reconcile: %s NetworkPolicy %s", result.value, where)
