"""CEL `matchConditions` for the workload webhooks: the API server skips UPDATEs whose answer
cannot be a refusal, so a scale, a status-driven rollout or a finalizer removal never waits on
(or fails with) egress-guard.

The core refuses an UPDATE only when the new pods lack a valid profile and the old ones had one
(an object that already lacked it stays updatable), and never refuses an object being deleted.
Whether the pods have a valid profile depends on their labels alone, so an UPDATE that leaves the
pod labels as they were gets the answer it would have had before, an allowance: it need not be
sent. An UPDATE that adds, changes or removes a pod label is sent, and so is every CREATE.

The expressions are built from the kinds table: the pod labels of a Pod are its own, of a CronJob
its job template's pod template's, of every other kind its pod template's. Every step into the
object is guarded with `has()`, because a condition that fails to evaluate falls back to the
webhook's failurePolicy, which for the enforce webhook refuses the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


def _labels_differ(template_path: Sequence[str]) -> str:
    return f"{labels_at('object', template_path)}\n  != {labels_at('oldObject', template_path)}"


def pod_labels_change(kinds: Sequence[WorkloadKind]) -> str:
    """CEL, true for a CREATE or for an UPDATE that changes the pod labels of its kind (one line
    per step, which the rendered YAML keeps as a block)."""
    branches = [
        (
            f"request.kind.group == {_cel_string(kind.group)} && "
            f"request.kind.kind == {_cel_string(kind.kind)}",
            _labels_differ(kind.template_path),
        )
        for kind in kinds
        if kind.template_path != GENERIC_TEMPLATE_PATH
    ]
    lines = ['request.operation != "UPDATE" || (']
    for test, differ in branches:
        lines += [f"  {test}", f"  ? {differ}", "  :"]
    lines += [f"  {_labels_differ(GENERIC_TEMPLATE_PATH)}", ")"]
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
