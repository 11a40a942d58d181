"""The managed namespaces: how they are labelled, what their next rollout would meet, and
whether the generated NetworkPolicies are all in place.

A workload admitted before its namespace enforced (or before a profile was removed from the
policy file) runs on, and is refused at its next update: a rollout that fails on the day it is
needed. Listing them now, with the reason the webhook would give, lets them be fixed first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from webhook.core.findings import NAMESPACE_LABELS
from webhook.core.live_workloads import refusal_if_applied
from webhook.core.namespace import namespace_context
from webhook.core.ownership import controlled_by_a_reviewed_kind
from webhook.core.policy import Mode, Policy
from webhook.core.raw_object import JsonObject, section
from webhook.core.wording import sentence
from webhook.core.workloads import WorkloadKind
from webhook.doctor.results import CheckResult, Status
from webhook.reconcile.plan import ReconcilePlan

NAMESPACES, GENERATED = "namespaces", "generated-objects"
SHOWN = 20
"""Items listed in a result's details before "and N more"."""


@dataclass(frozen=True, slots=True)
class Refusal:
    namespace: str
    workload: str
    reason: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.workload}: {self.reason}"


def enforcing(namespaces: Mapping[str, Mapping[str, str]], policy: Policy) -> frozenset[str]:
    return frozenset(
        name
        for name, labels in namespaces.items()
        if namespace_context(name, labels, policy).mode is Mode.ENFORCE
    )


def uses_network_policies(namespaces: Mapping[str, Mapping[str, str]], policy: Policy) -> bool:
    """Some namespace enforces with generated NetworkPolicies."""
    for name, labels in namespaces.items():
        context = namespace_context(name, labels, policy)
        if context.mode is Mode.ENFORCE and context.inject.network_policies:
            return True
    return False


def refusals(
    workloads: Iterable[tuple[WorkloadKind, JsonObject]],
    namespaces: Mapping[str, Mapping[str, str]],
    policy: Policy,
) -> list[Refusal]:
    """The workloads the validating webhook would refuse if they were applied again now."""
    found: list[Refusal] = []
    for kind, obj in workloads:
        if controlled_by_a_reviewed_kind(obj, policy):
            continue
        metadata = section(obj, "metadata")
        namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
        reason = refusal_if_applied(kind, obj, namespaces.get(namespace), policy)
        if reason:
            found.append(Refusal(namespace, f"{kind.kind}/{name}", reason))
    return found


def _listed(items: list[str]) -> tuple[str, ...]:
    shown = items[:SHOWN]
    if len(items) > SHOWN:
        shown.append(f"and {len(items) - SHOWN} more")
    return tuple(shown)


def check_namespaces(
    namespaces: Mapping[str, Mapping[str, str]],
    policy: Policy,
    refused: list[Refusal] | None,
) -> CheckResult:
    """`refused`: what `refusals` found in enforcing namespaces (None: not looked at)."""
    modes: Counter[str] = Counter()
    typos: list[str] = []
    for name, labels in sorted(namespaces.items()):
        context = namespace_context(name, labels, policy)
        if context.mode is None:
            continue
        modes[f"{context.mode.value}/{context.inject.value}"] += 1
        typos += [
            f"{name}: {sentence(note)}" for note in context.notes if note.check == NAMESPACE_LABELS
        ]
    counts = ", ".join(f"{count} {key}" for key, count in sorted(modes.items()))
    summary = f"{sum(modes.values())} managed namespaces (mode/inject: {counts or 'none'})"
    if typos:
        return CheckResult(
            NAMESPACES,
            Status.WARNING,
            f"{summary}; {len(typos)} mistyped labels",
            _listed(typos),
            "Correct the labels: a mistyped mode is read as enforce, a mistyped inject as the "
            "mode's default.",
        )
    if refused:
        return CheckResult(
            NAMESPACES,
            Status.WARNING,
            f"{summary}; {len(refused)} running workloads in enforcing namespaces would be "
            "refused on their next update",
            _listed([str(refusal) for refusal in refused]),
            "Give them a profile label (or fix what the reason names) before their next rollout.",
        )
    return CheckResult(NAMESPACES, Status.OK, summary)


def check_generated(plan: ReconcilePlan, enforcing_namespaces: frozenset[str]) -> CheckResult:
    """What the reconciler would change, from its plan (made without writing)."""
    missing = [f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in plan.creates]
    drifted = [
        f"{u.desired['metadata']['namespace']}/{u.desired['metadata']['name']}"
        for u in plan.updates
    ]
    stale = [f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in plan.deletes]
    if not (missing or drifted or stale):
        return CheckResult(
            GENERATED, Status.OK, f"{plan.in_place} generated NetworkPolicies, all in place"
        )
    details = _listed(
        [f"missing: {name}" for name in missing]
        + [f"drifted: {name}" for name in drifted]
        + [f"no longer wanted: {name}" for name in stale]
    )
    exposed = any(name.split("/", 1)[0] in enforcing_namespaces for name in missing + drifted)
    return CheckResult(
        GENERATED,
        Status.PROBLEM if exposed else Status.WARNING,
        f"{len(missing)} generated NetworkPolicies missing, {len(drifted)} drifted, "
        f"{len(stale)} no longer wanted ({plan.in_place} in place)",
        details,
        "Run `egress-guard reconcile --once` (or deploy the reconciler: it repairs this "
        "every minute).",
    )
