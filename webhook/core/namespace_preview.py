"""Namespace preview: what labelling a namespace would mean for the workloads already in it.

As Pod Security Admission does when a namespace's level changes, a Namespace CREATE or UPDATE
that sets or changes the `mode` label is answered (always allowed) with warnings naming the
existing workloads the new labels would deny, warn about or audit: the first few by name, then
a count. `kubectl label --dry-run=server ns/payments egress-guard.io/mode=enforce` thus shows
what enforcing would break before anything is enforced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core.checks import CHECKS
from webhook.core.decision import Decision, allowed, bounded_warnings
from webhook.core.namespace import NamespaceContext, namespace_context
from webhook.core.policy import Mode, Policy
from webhook.core.request import AdmissionRequest
from webhook.core.workloads import find_workload, group_of, mapping_at

NAMED = 3
"""Workloads named one by one; the rest are counted."""

_CONSEQUENCE = {
    Mode.ENFORCE: "enforce refuses them and their new pods",
    Mode.WARN: "warn flags them on every change",
    Mode.AUDIT: "audit records them",
}


@dataclass(frozen=True, slots=True)
class NamespaceChange:
    """A namespace whose `mode` label is being set or changed, before and after."""

    name: str
    before: NamespaceContext
    after: NamespaceContext
    created: bool


def _labels(obj: Any) -> Mapping[str, str]:
    labels = mapping_at(obj, ("metadata", "labels"))
    return {str(k): str(v) for k, v in labels.items()} if labels else {}


def namespace_change(request: AdmissionRequest, policy: Policy) -> NamespaceChange | None:
    """The change, when the review is a Namespace CREATE/UPDATE that sets or changes the mode."""
    if (
        request.kind != "Namespace"
        or request.group
        or request.sub_resource
        or request.operation not in ("CREATE", "UPDATE")
        or request.object is None
    ):
        return None
    metadata = mapping_at(request.object, ("metadata",)) or {}
    name = request.name or str(metadata.get("name") or "")
    new_labels = _labels(request.object)
    old_labels = _labels(request.old_object) if request.operation == "UPDATE" else {}
    new_mode = new_labels.get(policy.mode_label)
    if new_mode is None or new_mode == old_labels.get(policy.mode_label):
        return None
    return NamespaceChange(
        name=name,
        before=namespace_context(name, old_labels, policy),
        after=namespace_context(name, new_labels, policy),
        created=request.operation == "CREATE",
    )


def _owned_by_a_listed_kind(obj: Mapping[str, Any], policy: Policy) -> bool:
    """The object's controller is of a kind the preview lists (`Policy.reviewed_kinds`), so it is
    reported through that owner only, as Pod Security Admission does (a Deployment's ReplicaSet,
    a ReplicaSet's Pods)."""
    owners = (mapping_at(obj, ("metadata",)) or {}).get("ownerReferences")
    if not isinstance(owners, list):
        return False
    for owner in owners:
        if not isinstance(owner, Mapping) or owner.get("controller") is not True:
            continue
        group, kind = group_of(owner.get("apiVersion")), owner.get("kind")
        if group is not None and isinstance(kind, str) and policy.reviewed_kind(group, kind):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Violator:
    kind: str
    name: str
    warning: str


def violators(
    workloads: Sequence[Mapping[str, Any]], context: NamespaceContext, policy: Policy
) -> list[Violator]:
    """The top-level workloads (not owned by another listed one) that the checks fail."""
    found: list[Violator] = []
    for obj in workloads:
        kind = obj.get("kind")
        metadata = mapping_at(obj, ("metadata",)) or {}
        name = metadata.get("name")
        if (
            not isinstance(kind, str)
            or not isinstance(name, str)
            or _owned_by_a_listed_kind(obj, policy)
        ):
            continue
        workload = find_workload(obj, kind, name)
        if workload is None:
            continue
        for check in CHECKS:
            result = check(workload, policy, context)
            if result.violations:
                found.append(Violator(kind, name, result.violations[0].warning))
                break
    return found


def preview(
    change: NamespaceChange,
    workloads: Sequence[Mapping[str, Any]],
    *,
    complete: bool,
    policy: Policy,
    unavailable: str = "",
) -> Decision:
    """The answer to the namespace review: allowed, with warnings about the existing workloads.

    `complete` is False when the listing stopped at its limit or time budget; `unavailable`
    says why the workloads could not be listed at all.
    """
    after = change.after
    notes = list(after.notes)
    if after.exempt:
        notes.append(
            f"egress-guard: namespace {change.name} is exempt in the policy: "
            f"{policy.mode_label} has no effect there"
        )
        return allowed(note="namespace preview: exempt", warnings=bounded_warnings(notes))
    if unavailable:
        notes.append(f"egress-guard: could not check the workloads in {change.name}: {unavailable}")
        return allowed(note="namespace preview: listing failed", warnings=bounded_warnings(notes))
    found = violators(workloads, after, policy)
    warnings = list(notes)
    if found:
        assert after.mode is not None
        count = len(found)
        warnings.append(
            f"egress-guard: {count} existing workload{'' if count == 1 else 's'} in "
            f"{change.name} {'lacks' if count == 1 else 'lack'} a valid egress profile; "
            f"{_CONSEQUENCE[after.mode]}"
        )
        warnings.extend(f"egress-guard: {v.warning}" for v in found[:NAMED])
        if count > NAMED:
            warnings.append(f"egress-guard: ... and {count - NAMED} more")
    if not complete:
        warnings.append(
            f"egress-guard: only part of {change.name} was checked (limit or time budget reached)"
        )
    return allowed(
        note=f"namespace preview: {len(found)} of {len(workloads)} workloads would fail",
        warnings=bounded_warnings(warnings),
    )
