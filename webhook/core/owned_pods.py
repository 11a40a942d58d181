"""A Pod keeps the profile it was created with.

Relabelling a running Pod that a ReplicaSet, a Job or a StatefulSet owns (`kubectl label pod`, or
a `pods/status` update, which the API server also persists) would widen that Pod's egress while
its owner still declares the old profile: the Pod and its Deployment would say two things. The
profile of such a Pod changes on its owner, which rolls out new Pods. A Pod without an owner
keeps its profile too: otherwise removing a controller's ownerReference (which leaves the labels
alone, and so is never sent) and relabelling the orphan would get around the rule, and the
ReplicaSet would adopt it back with the wider profile. Such a Pod is recreated with the new one.
The rule holds for a Pod being deleted as well, which may run on for its grace period.
"""

from __future__ import annotations

from typing import Any

from webhook.core.findings import Finding, Severity, detail, register
from webhook.core.policy import Policy
from webhook.core.raw_object import section
from webhook.core.request import AdmissionRequest
from webhook.core.workloads import Workload, find_workload

CHECK_ID = register(
    "pod-profile-change",
    "a running Pod relabelled to another egress profile than it was created with",
)


def controller_of(obj: Any) -> tuple[str, str] | None:
    """(kind, name) of the object's controller (the ownerReference with `controller: true`)."""
    owners = section(obj, "metadata").get("ownerReferences")
    if not isinstance(owners, list):
        return None
    for owner in owners:
        if type(owner) is dict and owner.get("controller") is True:
            return (str(owner.get("kind") or "owner"), str(owner.get("name") or ""))
    return None


def relabelled_pod(
    request: AdmissionRequest, workload: Workload, policy: Policy
) -> tuple[Finding, ...]:
    """A violation when an UPDATE changes a Pod's profile label."""
    if not workload.is_pod:
        return ()
    old = find_workload(request.old_object, request.kind)
    if old is None:
        return ()
    key = policy.profile_label
    before, after = _text(old.pod_labels.get(key)), _text(workload.pod_labels.get(key))
    if before == after:
        return ()
    change = f"from {before or '(none)'} to {after or '(none)'}"
    owner = controller_of(request.old_object) or controller_of(request.object)
    if owner is None:
        return (
            Finding(
                CHECK_ID,
                Severity.VIOLATION,
                workload.subject,
                f"is running: its profile label may not change {change}",
                "create a new Pod with the new profile",
                detail(label=key, before=before, after=after),
            ),
        )
    kind, name = owner
    return (
        Finding(
            CHECK_ID,
            Severity.VIOLATION,
            workload.subject,
            f"belongs to {kind} {name!r}: its profile label may not change {change}",
            f"change {key} on {kind} {name!r}, which rolls out new pods",
            detail(owner_kind=kind, owner=name, label=key, before=before, after=after),
        ),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
