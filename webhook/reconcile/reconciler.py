"""One reconcile pass: read the cluster, plan with the pure core, carry the plan out.

Reading costs what the cluster's size in objects costs, never a call per namespace per kind:
namespaces and the generated NetworkPolicies (selected by egress-guard's managed-by label) are
read with one paged cluster-wide list each, and workloads with one paged cluster-wide list per
workload kind, each page reduced to the profiles it uses in managed namespaces and then dropped,
so the reconciler never holds the cluster's workloads in memory. Only while few namespaces are
managed (a pilot) are workloads listed per managed namespace instead, so as not to read every
workload of a large cluster for a handful of namespaces. Pods are listed with a
`<prefix>/profile` label selector, which is sound for Pods alone: a pod's own labels are what its
profile policy selects, and a pod without the label adds no profile (the default-deny policy is
wanted in a managed namespace whatever runs there). Other kinds are listed whole, since a
selector sees an object's own labels and their profile is on the pod template.

If any read fails the pass changes nothing: pruning on a partial picture would delete policies
that workloads still need. For the same reason a profile policy is pruned only when two
consecutive passes found it unused (see `plan.py`): workloads and policies are read a
moment apart, and a workload admitted in between has had its policy ensured by admission. A
namespace's opt-out, read from its labels, is pruned at once.

Writes happen only where the plan found a difference, at a bounded rate with a few in flight
(`write_pacing.py`), creates before updates before deletes. Each write is bounded in time,
checked against `may_act` first (a leader that lost its lease stops, and the report counts
what was left undone), and a failed write is reported without stopping the others.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from webhook.admission.ports import PolicySource
from webhook.cluster.api_calls import (
    PAGE_RETRIES,
    ApiRejected,
    ApiUnreachable,
    CallCounter,
    Deadline,
    pages,
)
from webhook.cluster.egress_object_writer import (
    EgressObjectWriter,
    ForeignObject,
    KindNotServed,
    Written,
)
from webhook.cluster.generated_lists import list_generated
from webhook.cluster.list_watch import LIST_TIMEOUT
from webhook.cluster.namespace_list import namespace_labels
from webhook.cluster.report_writer import ReportWriter
from webhook.cluster.workload_lists import cluster_lister, namespaced_lister
from webhook.cluster.write_pacing import PacingSettings, WriteRate, paced
from webhook.core.backends import (
    GENERATED_KINDS,
    GeneratedKind,
    generated_kind,
    kinds_of,
    object_ref,
)
from webhook.core.namespace import NamespaceContext, namespace_context
from webhook.core.policy import Policy
from webhook.core.raw_object import JsonObject
from webhook.core.workload_reports import (
    REPORT_KINDS,
    REPORT_NAME,
    WorkloadResult,
    render_report,
    same_report,
    workload_result,
)
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
PER_NAMESPACE_LISTS_UP_TO = 10
"""Managed namespaces up to which workloads are listed per namespace rather than cluster-wide."""


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
    """The pass stopped early: this replica is no longer the leader, or it is shutting down."""
    left: int = 0
    """Writes the plan wanted that were not tried because the pass stopped early."""
    retries: int = 0
    """Writes tried again after a 429, a 5xx or no answer."""
    api_calls: int = 0
    duration_s: float = 0.0
    reports_written: list[str] = field(default_factory=list)
    """Namespaces whose report was created or updated (`reports.policyReports`)."""
    reports_deleted: list[str] = field(default_factory=list)
    reports_unavailable: str = ""
    """Why no report was written this pass (its CRD is not installed), or empty."""

    @property
    def complete(self) -> bool:
        """Nothing failed, nothing was left undone: the cluster is as the policy says."""
        return not (self.errors or self.refused or self.stopped or self.left)

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
            "left": self.left,
            "retries": self.retries,
            "reportsWritten": self.reports_written,
            "reportsDeleted": self.reports_deleted,
            "reportsUnavailable": self.reports_unavailable,
            "apiCalls": self.api_calls,
            "durationSeconds": round(self.duration_s, 3),
        }

    def summary(self) -> str:
        return (
            f"{self.namespaces} namespaces ({self.managed} with NetworkPolicies): "
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.deleted)} deleted, {len(self.deferred)} deferred, {len(self.kept)} kept, "
            f"{self.unchanged} in place, {len(self.refused)} refused, {len(self.errors)} errors; "
            + (
                f"reports: {len(self.reports_written)} written, "
                f"{len(self.reports_deleted)} deleted; "
                if self.reports_written or self.reports_deleted
                else ""
            )
            + f"{self.api_calls} API calls in {self.duration_s:.1f} s"
            + (
                f" (stopped early: leadership lost or shutting down; {self.left} changes left "
                "undone)"
                if self.stopped
                else ""
            )
        )


WorkloadLister = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class _Step:
    """One write of the plan."""

    action: str
    """`create`, `update` or `delete`."""
    manifest: Mapping[str, Any]
    live: Mapping[str, Any] | None = None

    @property
    def where(self) -> str:
        """`namespace/name` for a NetworkPolicy, `namespace/Kind/name` for the others."""
        metadata = self.manifest["metadata"]
        return f"{metadata['namespace']}/{object_ref(self.manifest)}"


def _within(change: Callable[[Deadline], None], budget_s: float) -> None:
    """One write, with a fresh time budget per attempt."""
    change(Deadline(budget_s))


_IN_PLACE = frozenset(written.value for written in Written)
"""A create or update that left its object as rendered: created, updated or unchanged."""


class _LeadershipLost(Exception):
    """Raised inside a write that found this replica no longer the leader."""


class Reconciler:
    def __init__(
        self,
        api: client.ApiClient,
        policies: PolicySource,
        *,
        prune: bool = True,
        write_budget_s: float = RECONCILE_WRITE_BUDGET_S,
        pacing: PacingSettings | None = None,
        per_namespace_lists_up_to: int = PER_NAMESPACE_LISTS_UP_TO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policies = policies
        self._prune = prune
        self._write_budget_s = write_budget_s
        self._pacing = pacing or PacingSettings()
        self._per_namespace_up_to = per_namespace_lists_up_to
        self._clock = clock
        self._calls = CallCounter()
        self._writer = EgressObjectWriter(api, counter=self._calls)
        self._swept: Policy | None = None
        """The policy file under which the kinds of unused backends were last found empty."""
        self._not_served: set[GeneratedKind] = set()
        """Kinds of the policy's backends the cluster did not serve this pass: not written."""
        self._api = api
        self._unused: frozenset[NetworkPolicyIdentity] = frozenset()
        """Profile NetworkPolicies the last pass found unused (see the module docstring)."""
        self._reports_missing = False
        """The report kind's CRD was missing last pass (said once, until it is installed)."""

    def run_once(self, may_act: Callable[[], bool] = lambda: True) -> ReconcileReport:
        started, calls_before = self._clock(), self._calls.count
        report = ReconcileReport()
        try:
            self._pass(report, may_act)
        finally:
            report.api_calls = self._calls.count - calls_before
            report.duration_s = self._clock() - started
        return report

    def preview(self) -> ReconcilePlan:
        """What a pass would change now, read and planned without writing (nor remembering
        anything for the next pass). Raises ApiUnreachable or ApiRejected if a read fails."""
        policy = self._policies.current()
        states, generated, _ = self._read(policy, ReconcileReport(), reports=False, remember=False)
        return plan_reconcile(policy, states, generated, prune=self._prune)

    def _pass(self, report: ReconcileReport, may_act: Callable[[], bool]) -> None:
        policy = self._policies.current()
        try:
            states, generated, results = self._read(policy, report)
        except (ApiUnreachable, ApiRejected) as err:
            self._unused = frozenset()  # the next pass is the first of two again
            report.errors.append(f"reading the cluster failed, nothing changed: {err}")
            log.warning("reconcile: %s", report.errors[-1])
            return
        plan = plan_reconcile(
            policy, states, generated, prune=self._prune, unused_before=self._unused
        )
        self._unused = plan.unused
        report.unchanged = plan.in_place
        report.kept = [f"{namespace}/{name}" for namespace, name in plan.kept]
        report.deferred = [f"{namespace}/{name}" for namespace, name in plan.deferred]
        self._carry_out(plan, report, may_act)
        if results is not None and not report.stopped:
            self._write_reports(policy, results, report, may_act)

    # reading

    def _read(
        self,
        policy: Policy,
        report: ReconcileReport,
        *,
        reports: bool = True,
        remember: bool = True,
    ) -> tuple[list[NamespaceState], list[JsonObject], dict[str, list[WorkloadResult]] | None]:
        """Namespaces, generated policies, and (with `reports.policyReports`) each reported
        namespace's workload results."""
        labels_by_name = namespace_labels(self._api, counter=self._calls)
        managed = {
            name
            for name, labels in labels_by_name.items()
            if namespace_context(name, labels, policy).inject.network_policies
        }
        report.namespaces, report.managed = len(labels_by_name), len(managed)
        generated = self._generated(policy, report, remember=remember)
        reported: dict[str, NamespaceContext] = {}
        if reports and policy.reports.policy_reports:
            for name, labels in labels_by_name.items():
                context = namespace_context(name, labels, policy)
                if context.mode is not None:
                    reported[name] = context
        profiles, results = self._workloads(policy, managed, reported)
        states = [
            NamespaceState(name, labels, frozenset(profiles.get(name, ())))
            for name, labels in labels_by_name.items()
        ]
        return states, generated, results if reports and policy.reports.policy_reports else None

    def _workloads(
        self, policy: Policy, managed: set[str], reported: Mapping[str, NamespaceContext]
    ) -> tuple[dict[str, set[str]], dict[str, list[WorkloadResult]]]:
        """The profiles each managed namespace's workloads declare, and each reported
        namespace's workload results, read a page at a time."""
        profiles: dict[str, set[str]] = {name: set() for name in managed}
        results: dict[str, list[WorkloadResult]] = {name: [] for name in reported}
        wanted = managed | set(reported)
        if not wanted:
            return profiles, results
        per_namespace = len(wanted) <= self._per_namespace_up_to
        for kind in policy.reviewed_kinds:
            pods = (kind.group, kind.kind) == ("", "Pod")
            # a bare Pod without the label is reported (it fails), so reports list Pods whole
            selector = policy.profile_label if pods and not reported else None
            if per_namespace:
                lister = namespaced_lister(self._api, kind)
                sources: list[tuple[WorkloadLister, tuple[str, ...]]] = [
                    (lister, (namespace,)) for namespace in sorted(wanted)
                ]
            else:
                sources = [(cluster_lister(self._api, kind), ())]
            for lister, args in sources:
                for items in self._kind_pages(kind, lister, args, selector):
                    for item in items:
                        namespace = str((item.get("metadata") or {}).get("namespace"))
                        if namespace in profiles:
                            profile = workload_profile(kind.kind, item, policy, kind.group)
                            if profile is not None:
                                profiles[namespace].add(profile)
                        if namespace in reported:
                            found = workload_result(kind, item, policy, reported[namespace])
                            if found is not None:
                                results[namespace].append(found)
        return profiles, results

    def _kind_pages(
        self,
        kind: WorkloadKind,
        lister: WorkloadLister,
        args: tuple[str, ...],
        label_selector: str | None,
    ) -> Iterator[list[JsonObject]]:
        """The pages of one list of a kind. A custom kind from the policy's workloadKinds whose
        resource the cluster does not serve (404: its CRD is not installed) has no objects."""
        try:
            for items, _ in pages(
                lister,
                *args,
                timeout=LIST_TIMEOUT,
                counter=self._calls,
                retries=PAGE_RETRIES,
                label_selector=label_selector,
            ):
                yield items
        except ApiRejected as err:
            if err.not_found and builtin_kind(kind.group, kind.kind) is None:
                log.info("reconcile: %s is not served by this cluster: none listed", kind.qualified)
                return
            raise

    def _generated(
        self, policy: Policy, report: ReconcileReport, *, remember: bool = True
    ) -> list[JsonObject]:
        """Every generated object of every kind, each with its kind. The kinds of the policy's
        backends must be read; a CRD kind the cluster does not serve has none (and is said).
        The kinds of other backends are read too (where the cluster serves them and RBAC lets
        egress-guard), so that what a backend taken out of the file left is pruned, until a pass
        under this policy file finds none of them left. `remember` False (a preview) leaves
        that bookkeeping as it was."""
        used = kinds_of(policy.backend_set)
        sweep = policy is not self._swept
        others = frozenset(k for k in GENERATED_KINDS if k not in used) if sweep else frozenset()
        listing = list_generated(self._api, [*used, *others], counter=self._calls, optional=others)
        if remember and not any(generated_kind(obj) in others for obj in listing.objects):
            self._swept = policy  # nothing of another backend is left: no need to look again
        not_served = {kind for kind in listing.not_served if kind in used}
        if remember:
            self._not_served = not_served
        for kind in sorted(not_served, key=GENERATED_KINDS.index):
            report.errors.append(_not_served(kind))
            log.error("reconcile: %s", report.errors[-1])
        return listing.objects

    # writing

    def _carry_out(
        self, plan: ReconcilePlan, report: ReconcileReport, may_act: Callable[[], bool]
    ) -> None:
        unserved = self._not_served
        phases = [
            [_Step("create", desired) for desired in plan.creates],
            [_Step("update", update.desired, update.live) for update in plan.updates],
            [_Step("delete", live) for live in plan.deletes],
        ]
        incomplete: set[str] = set()
        """Namespaces whose objects will not all be in place after this pass."""
        if unserved:  # a kind not served was said once in the errors, not per object
            for phase in phases:
                incomplete.update(
                    s.manifest["metadata"]["namespace"]
                    for s in phase
                    if generated_kind(s.manifest) in unserved
                )
            phases = [
                [s for s in phase if generated_kind(s.manifest) not in unserved] for phase in phases
            ]
        retiring = [_Step("delete", live) for live in plan.retired]
        if not any(phases) and not retiring:
            return
        rate = WriteRate(self._pacing.writes_per_second)
        lost = threading.Event()
        retried = CallCounter()

        def attempt(step: _Step) -> tuple[str, str]:
            if lost.is_set():
                return "left", ""

            def write() -> Any:
                if not may_act():
                    raise _LeadershipLost
                deadline = Deadline(self._write_budget_s)
                if step.action == "delete":
                    return self._writer.delete(step.manifest, deadline)
                return self._writer.ensure(step.manifest, deadline, live=step.live)

            def on_retry(err: Exception, delay: float) -> None:
                retried.add()
                log.warning("reconcile: %s: %s; trying again in %.1f s", step.where, err, delay)

            try:
                result = paced(write, rate, self._pacing, on_retry=on_retry)
            except _LeadershipLost:
                lost.set()
                return "left", ""
            except ForeignObject as err:
                return "refused", str(err)
            except (KindNotServed, ApiUnreachable, ApiRejected) as err:
                return "error", str(err)
            if step.action == "delete":
                return ("deleted" if result else "gone"), ""
            return Written(result).value, ""

        with ThreadPoolExecutor(
            self._pacing.in_flight, thread_name_prefix="egress-guard-write"
        ) as pool:
            for phase in phases:
                for step, (outcome, detail) in zip(phase, pool.map(attempt, phase), strict=True):
                    self._record(report, step, outcome, detail)
                    if step.action != "delete" and outcome not in _IN_PLACE:
                        incomplete.add(step.manifest["metadata"]["namespace"])
            # what an old backend held goes only where the new one's objects are all in place
            due = [s for s in retiring if s.manifest["metadata"]["namespace"] not in incomplete]
            report.deferred += [
                s.where for s in retiring if s.manifest["metadata"]["namespace"] in incomplete
            ]
            for step, (outcome, detail) in zip(due, pool.map(attempt, due), strict=True):
                self._record(report, step, outcome, detail)
        report.retries = retried.count
        if lost.is_set():
            report.stopped = True
            log.warning(
                "reconcile: no longer the leader; stopped with %d changes left", report.left
            )

    def _write_reports(
        self,
        policy: Policy,
        results: Mapping[str, list[WorkloadResult]],
        report: ReconcileReport,
        may_act: Callable[[], bool],
    ) -> None:
        """One report per reported namespace, rewritten only when its results changed; those of
        namespaces no longer reported deleted. A missing CRD is said once, not every pass."""
        kind = REPORT_KINDS[policy.reports.format]
        writer = ReportWriter(self._api, kind, self._calls)
        try:
            live = writer.live()
        except ApiRejected as err:
            if not err.not_found:
                report.errors.append(f"listing {kind.kind}s failed: {err}")
                return
            report.reports_unavailable = (
                f"{kind.plural}.{kind.group} is not installed: no {kind.kind} is written "
                "(install its CRD, e.g. with Kyverno or Policy Reporter)"
            )
            if not self._reports_missing:
                log.error("reconcile: %s", report.reports_unavailable)
            self._reports_missing = True
            return
        except ApiUnreachable as err:
            report.errors.append(f"listing {kind.kind}s failed: {err}")
            return
        if self._reports_missing:
            log.info("reconcile: %s.%s is installed: writing reports", kind.plural, kind.group)
            self._reports_missing = False
        rate = WriteRate(self._pacing.writes_per_second)
        changes: list[tuple[str, Callable[[Deadline], None]]] = []
        for namespace, entries in sorted(results.items()):
            desired = render_report(namespace, entries, kind)
            current = live.pop(namespace, None)
            if current is None:
                changes.append((namespace, functools.partial(writer.create, desired)))
            elif not same_report(current, desired):
                changes.append((namespace, functools.partial(writer.replace, current, desired)))
        deletes: list[tuple[str, Callable[[Deadline], None]]] = [
            (namespace, functools.partial(writer.delete, current))
            for namespace, current in live.items()
        ]
        for index, (namespace, change) in enumerate([*changes, *deletes]):
            if not may_act():
                report.stopped = True
                report.left += len(changes) + len(deletes) - index
                return
            budget = self._write_budget_s
            try:
                paced(functools.partial(_within, change, budget), rate, self._pacing)
            except (ApiRejected, ApiUnreachable) as err:
                report.errors.append(f"{namespace}/{kind.kind} {REPORT_NAME}: {err}")
                continue
            written = report.reports_written if index < len(changes) else report.reports_deleted
            written.append(namespace)

    @staticmethod
    def _record(report: ReconcileReport, step: _Step, outcome: str, detail: str) -> None:
        where = step.where
        if outcome == "left":
            report.left += 1
        elif outcome == "refused":
            report.refused.append(where)
            log.warning("reconcile: %s", detail)
        elif outcome == "error":
            report.errors.append(f"{where}: {detail}")
            log.warning("reconcile: %s: %s", where, detail)
        elif outcome == "deleted":
            report.deleted.append(where)
            log.info("reconcile: deleted %s %s", step.manifest["kind"], where)
        elif outcome == Written.CREATED.value:
            report.created.append(where)
            log.info("reconcile: created %s %s", step.manifest["kind"], where)
        elif outcome == Written.UPDATED.value:
            report.updated.append(where)
            log.info("reconcile: updated %s %s", step.manifest["kind"], where)
        elif outcome == Written.UNCHANGED.value:
            report.unchanged += 1


def _not_served(kind: GeneratedKind) -> str:
    return (
        f"the cluster does not serve {kind.kind} (the CRD {kind.qualified} is not installed): "
        f"nothing of the {kind.backend.value} backend is reconciled"
    )
