"""CEL `matchConditions` for the workload webhooks: the API server skips UPDATEs whose answer
cannot be a refusal, so a scale, a status-driven rollout or a finalizer removal never waits on
(or fails with) egress-guard.

The core refuses an UPDATE only when the new pods fail a check the old ones passed (an object
that already failed stays updatable), and never refuses an object being deleted. What the checks
read of the pods is their labels (the profile), `hostNetwork` and the Multus networks annotation,
so an UPDATE that leaves those three as they were gets the answer it would have had before, an
allowance: it need not be sent. An UPDATE that changes any of them is sent, and so is every
CREATE.

The expressions are built from the kinds table: the pod labels of a Pod are its own, of a CronJob
its job template's pod template's, of every other kind its pod template's. Every step into the
object is guarded with `has()`, because a condition that fails to evaluate falls back to the
webhook's failurePolicy, which for the enforce webhook refuses the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from webhook.core.checks.secondary_networks import MULTUS_ANNOTATIONS
from webhook.core.workloads import GENERIC_TEMPLATE_PATH, WorkloadKind

NOT_BEING_DELETED = "not-being-deleted"
POD_LABELS_CHANGE = "update-changes-pod-labels"


def _cel_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def labels_at(root: str, template_path: Sequence[str]) -> str:
    """CEL for the pod labels under `root` (`object` or `oldObject`): the map, or `{}` where any
    step of the path is absent."""
    steps = [*template_path, "metadata", "labels"]
    return f"({_has_each(root, steps)}\n    ? {root}.{'.'.join(steps)} : {{}})"


def _has_each(root: str, steps: Sequence[str]) -> str:
    """CEL: every step of the path under `root` is present (a missing one would be an error)."""
    return " && ".join(f"has({root}.{'.'.join(steps[: i + 1])})" for i in range(len(steps)))


def _guarded(root: str, steps: Sequence[str], default: str) -> str:
    return f"({_has_each(root, steps)} ? {root}.{'.'.join(steps)} : {default})"


def _annotation_at(root: str, template_path: Sequence[str], key: str) -> str:
    """CEL for one pod annotation under `root`, or "" where it is absent (a map key with dots is
    tested with `in`, which `has()` cannot do)."""
    steps = [*template_path, "metadata", "annotations"]
    annotations = f"{root}.{'.'.join(steps)}"
    key_text = _cel_string(key)
    guards = _has_each(root, steps)
    return f'({guards} && {key_text} in {annotations} ? {annotations}[{key_text}] : "")'


def _pods_differ(template_path: Sequence[str]) -> str:
    """CEL, true when what the checks read of the pods differs between old and new object."""
    host_network = [*template_path, "spec", "hostNetwork"]
    return (
        f"{labels_at('object', template_path)}\n  != {labels_at('oldObject', template_path)}"
        f"\n  || {_guarded('object', host_network, 'false')}"
        f" != {_guarded('oldObject', host_network, 'false')}"
        + "".join(
            f"\n  || {_annotation_at('object', template_path, key)}"
            f" != {_annotation_at('oldObject', template_path, key)}"
            for key in MULTUS_ANNOTATIONS
        )
    )


def pod_labels_change(kinds: Sequence[WorkloadKind]) -> str:
    """CEL, true for a CREATE or for an UPDATE that changes what the checks read of its kind's
    pods (one line per step, which the rendered YAML keeps as a block)."""
    branches = [
        (
            f"request.kind.group == {_cel_string(kind.group)} && "
            f"request.kind.kind == {_cel_string(kind.kind)}",
            _pods_differ(kind.template_path),
        )
        for kind in kinds
        if kind.template_path != GENERIC_TEMPLATE_PATH
    ]
    lines = ['request.operation != "UPDATE" || (']
    for test, differ in branches:
        lines += [f"  {test}", f"  ? {differ}", "  :"]
    lines += [f"  {_pods_differ(GENERIC_TEMPLATE_PATH)}", ")"]
    return "\n".join(lines)


def not_being_deleted() -> str:
    """CEL, true unless the object carries a deletionTimestamp, or is a Pod: a Pod being deleted
    may run on for its grace period, and its profile label may not change meanwhile."""
    return (
        "!(has(object.metadata) && has(object.metadata.deletionTimestamp)) || "
        '(request.kind.group == "" && request.kind.kind == "Pod")'
    )


def workload_match_conditions(kinds: Sequence[WorkloadKind]) -> list[dict[str, Any]]:
    """The conditions (all must hold) under which a workload review is sent."""
    return [
        {"name": NOT_BEING_DELETED, "expression": not_being_deleted()},
        {"name": POD_LABELS_CHANGE, "expression": pod_labels_change(kinds)},
    ]


NOT_EGRESS_GUARD = "not-egress-guard-itself"
MAY_WIDEN_OR_IS_GENERATED = "may-widen-egress-or-is-generated"
NOT_NAMESPACE_CLEANUP = "not-namespace-cleanup"
LOOSENS_AN_ENFORCING_NAMESPACE = "loosens-an-enforcing-namespace"


def not_from(users: Sequence[str]) -> str:
    """CEL, true unless the request comes from one of `users`: egress-guard's own writes of its
    NetworkPolicies never wait on (or deadlock with) its own webhook."""
    listed = ", ".join(_cel_string(user) for user in sorted(users))
    return f"!(request.userInfo.username in [{listed}])"


def _label_of(root: str, key: str) -> str:
    labels = f"{root}.metadata.labels"
    return f'(has({labels}) && {_cel_string(key)} in {labels} ? {labels}[{_cel_string(key)}] : "")'


def loosens_an_enforcing_namespace(
    mode_label: str, inject_label: str, preview: Sequence[str]
) -> str:
    """CEL, true for an UPDATE of a namespace that enforces (its mode label is set, to anything
    but a preview mode, even to "") and removes or changes its mode label or changes its inject
    label: the requests the governance of `loosenNamespaces` must see even while egress-guard is
    down."""
    mode = _cel_string(mode_label)
    old, new = "oldObject.metadata.labels", "object.metadata.labels"
    previews = ", ".join(_cel_string(value) for value in preview)
    return (
        'request.operation == "UPDATE"\n'
        f"&& has({old}) && {mode} in {old} && !({old}[{mode}] in [{previews}])\n"
        f"&& (!(has({new}) && {mode} in {new}) || {new}[{mode}] != {old}[{mode}]\n"
        f"  || {_label_of('object', inject_label)} != {_label_of('oldObject', inject_label)})"
    )


def _labelled(root: str, key: str, value: str) -> str:
    labels = f"{root}.metadata.labels"
    return (
        f"has({root}.metadata) && has({labels}) && {_cel_string(key)} in {labels} "
        f"&& {labels}[{_cel_string(key)}] == {_cel_string(value)}"
    )


def may_widen_or_is_generated(key: str, value: str) -> str:
    """CEL, true for a request egress-guard may refuse: one that touches a generated object
    (old or new carries `key=value`), or a CREATE/UPDATE of an object with egress rules (a
    NetworkPolicy's or CiliumNetworkPolicy's `spec.egress`, a Sidecar's listeners), rules in a
    CiliumNetworkPolicy's `specs`, a Sidecar's `workloadSelector`, or a ServiceEntry's hosts
    (which may pose as a Service). Deleting or writing a
    policy of the namespace's own that opens nothing (an ingress-only one, a deny) is never
    sent, so it never fails while egress-guard is down.
    `object` is null on DELETE and `oldObject` on CREATE: each is read only where it is set."""
    return (
        f'(request.operation != "CREATE" && {_labelled("oldObject", key, value)})\n'
        f'|| (request.operation != "DELETE" && ({_labelled("object", key, value)}\n'
        "  || (has(object.spec) && has(object.spec.egress) && size(object.spec.egress) > 0)\n"
        "  || (has(object.specs) && size(object.specs) > 0)\n"
        "  || (has(object.spec) && has(object.spec.workloadSelector))\n"
        "  || (has(object.spec) && has(object.spec.hosts))))"
    )


def not_deleted_by(users: Sequence[str]) -> str:
    """CEL, false for a DELETE by one of `users` (the controllers that empty a namespace being
    deleted): those must never wait on egress-guard."""
    listed = ", ".join(_cel_string(user) for user in sorted(users))
    return f'!(request.operation == "DELETE" && request.userInfo.username in [{listed}])'
