"""Namespace preview: what labelling a namespace would mean for the workloads already in it.

As Pod Security Admission does when a namespace's level changes, a Namespace CREATE or UPDATE
that sets or changes the `mode` label is answered (always allowed) with warnings naming the
existing workloads the new labels would deny, warn about or audit: the first few by name, then
a count. `kubectl label --dry-run=server ns/payments egress-guard.io/mode=enforce` thus shows
what enforcing would break before anything is enforced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from webhook.core.checks import CHECKS
from webhook.core.decision import Decision, Note, allowed
from webhook.core.findings import NAMESPACE_PREVIEW, Finding, Severity, detail
from webhook.core.namespace import NamespaceContext, namespace_context, namespace_labels
from webhook.core.ownership import controlled_by_a_reviewed_kind
from webhook.core.policy import Mode, Policy
from webhook.core.raw_object import section
from webhook.core.request import AdmissionRequest
from webhook.core.workloads import find_workload

NAMED = 3
"""Workloads named one by one; the rest are counted."""

_CONSEQUENCE = {
    Mode.ENFORCE: "enforce refuses them and their new pods",
    Mode.WARN: "warn flags them on every change",
    Mode.AUDIT: "audit records them",
}


@dataclass(frozen=True, slots=True)
class NamespaceChange:
    """A namespace whose `mode` label is being set or changed, and what the new labels mean."""

    name: str
    after: NamespaceContext
    created: bool


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
    metadata = section(request.object, "metadata")
    name = request.name or str(metadata.get("name") or "")
    new_labels = namespace_labels(request.object)
    old_labels = namespace_labels(request.old_object) if request.operation == "UPDATE" else {}
    new_mode = new_labels.get(policy.mode_label)
    if new_mode is None or new_mode == old_labels.get(policy.mode_label):
        return None
    return NamespaceChange(
        name=name,
        after=namespace_context(name, new_labels, policy),
        created=request.operation == "CREATE",
    )


def violators(
    workloads: Sequence[Mapping[str, Any]], context: NamespaceContext, policy: Policy
) -> list[Finding]:
    """The first violation of each top-level workload (not owned by another listed one)."""
    found: list[Finding] = []
    for obj in workloads:
        kind = obj.get("kind")
        metadata = section(obj, "metadata")
        name = metadata.get("name")
        if (
            not isinstance(kind, str)
            or not isinstance(name, str)
            or controlled_by_a_reviewed_kind(obj, policy)
        ):
            continue
        workload = find_workload(obj, kind, name)
        if workload is None:
            continue
        for check in CHECKS:
            violation = next(
                (f for f in check.run(workload, policy, context) if f.is_violation), None
            )
            if violation is not None:
                found.append(violation)
                break
    return found


def _said(reason: str, **facts: str | int | bool) -> Finding:
    """A line of the preview. It names the namespace itself rather than as a subject: a warning
    has 120 characters, and these must say their count and consequence whole."""
    return Finding(NAMESPACE_PREVIEW, Severity.ADVICE, None, reason, detail=detail(**facts))


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
    says why the workloads could not be listed at all. The violations found are advice here:
    labelling a namespace is never refused.
    """
    after = change.after
    name = change.name
    findings: list[Finding] = list(after.notes)
    if after.exempt:
        findings.append(
            _said(
                f"namespace {name} is exempt in the policy: {policy.mode_label} has no effect "
                "there",
                namespace=name,
                exempt=True,
            )
        )
        return allowed(Note.NAMESPACE_PREVIEW, tuple(findings))
    if unavailable:
        findings.append(
            _said(
                f"could not check the workloads in {name}: {unavailable}",
                namespace=name,
                listed=False,
            )
        )
        return allowed(Note.NAMESPACE_PREVIEW, tuple(findings))
    found = violators(workloads, after, policy)
    if found:
        assert after.mode is not None
        count = len(found)
        findings.append(
            _said(
                f"{count} existing workload{'' if count == 1 else 's'} in {name} "
                f"{'lacks' if count == 1 else 'lack'} a valid egress profile; "
                f"{_CONSEQUENCE[after.mode]}",
                namespace=name,
                violating=count,
                listed=len(workloads),
            )
        )
        findings.extend(_as_advice(violation) for violation in found[:NAMED])
        if count > NAMED:
            findings.append(_said(f"... and {count - NAMED} more", namespace=name))
    if not complete:
        findings.append(
            _said(
                f"only part of {name} was checked (limit or time budget reached)",
                namespace=name,
                complete=False,
            )
        )
    return allowed(Note.NAMESPACE_PREVIEW, tuple(findings))


def _as_advice(violation: Finding) -> Finding:
    """A workload's violation, told (never enforced) in the namespace's answer."""
    return replace(violation, severity=Severity.ADVICE)
