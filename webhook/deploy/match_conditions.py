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

from webhook.core.checks.secondary_networks import MULTUS_NETWORKS
from webhook.core.workloads import GENERIC_TEMPLATE_PATH, WorkloadKind

NOT_BEING_DELETED = "not-being-deleted"
POD_LABELS_CHANGE = "update-changes-pod-labels"


def _cel_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def labels_at(root: str, template_path: Sequence[str]) -> str:
    """CEL for the pod labels under `root` (`object` or `oldObject`): the map, or `{}` where any
    step of the path is absent."""
    steps = [*template_path, "metadata", "labels"]
    guards = " && ".join(f"has({root}.{'.'.join(steps[: i + 1])})" for i in range(len(steps)))
    return f"({guards}\n    ? {root}.{'.'.join(steps)} : {{}})"


def _guarded(root: str, steps: Sequence[str], default: str) -> str:
    guards = " && ".join(f"has({root}.{'.'.join(steps[: i + 1])})" for i in range(len(steps)))
    return f"({guards} ? {root}.{'.'.join(steps)} : {default})"


def _annotation_at(root: str, template_path: Sequence[str], key: str) -> str:
    """CEL for one pod annotation under `root`, or "" where it is absent (a map key with dots is
    tested with `in`, which `has()` cannot do)."""
    steps = [*template_path, "metadata", "annotations"]
    guards = " && ".join(f"has({root}.{'.'.join(steps[: i + 1])})" for i in range(len(steps)))
    annotations = f"{root}.{'.'.join(steps)}"
    key_text = _cel_string(key)
    return f'({guards} && {key_text} in {annotations} ? {annotations}[{key_text}] : "")'


def _pods_differ(template_path: Sequence[str]) -> str:
    """CEL, true when what the checks read of the pods differs between old and new object."""
    host_network = [*template_path, "spec", "hostNetwork"]
    return (
        f"{labels_at('object', template_path)}\n  != {labels_at('oldObject', template_path)}"
        f"\n  || {_guarded('object', host_network, 'false')}"
        f" != {_guarded('oldObject', host_network, 'false')}"
        f"\n  || {_annotation_at('object', template_path, MULTUS_NETWORKS)}"
        f" != {_annotation_at('oldObject', template_path, MULTUS_NETWORKS)}"
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
    """CEL, true unless the object carries a deletionTimestamp."""
    return "!(has(object.metadata) && has(object.metadata.deletionTimestamp))"


def workload_match_conditions(kinds: Sequence[WorkloadKind]) -> list[dict[str, Any]]:
    """The conditions (all must hold) under which a workload review is sent."""
    return [
        {"name": NOT_BEING_DELETED, "expression": not_being_deleted()},
        {"name": POD_LABELS_CHANGE, "expression": pod_labels_change(kinds)},
    ]


NOT_EGRESS_GUARD = "not-egress-guard-itself"
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
    but a preview mode) and changes its mode or inject label: the requests the governance of
    `loosenNamespaces` must see even while egress-guard is down."""
    old_mode = _label_of("oldObject", mode_label)
    previews = ", ".join(_cel_string(mode) for mode in preview)
    return (
        'request.operation == "UPDATE"\n'
        f'&& {old_mode} != "" && !({old_mode} in [{previews}])\n'
        f"&& ({_label_of('object', mode_label)} != {old_mode}\n"
        f"  || {_label_of('object', inject_label)} != {_label_of('oldObject', inject_label)})"
    )
