"""Where a workload keeps the labels and containers of the pods it runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "pod": (),
    "deployment": ("spec", "template"),
    "statefulset": ("spec", "template"),
    "daemonset": ("spec", "template"),
    "replicaset": ("spec", "template"),
    "replicationcontroller": ("spec", "template"),
    "job": ("spec", "template"),
    "cronjob": ("spec", "jobTemplate", "spec", "template"),
}
"""The built-in workload kinds and the path of their pod template (empty: the object is the pod)."""

GENERIC_TEMPLATE_PATH = ("spec", "template")
"""Any other kind counts as a workload when it has a pod template here (e.g. an Argo Rollout)."""

CONTAINER_LISTS = ("initContainers", "containers")
"""Container lists a pod is created with (ephemeral containers arrive later, by subresource)."""

_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Workload:
    """A workload object and its pod template, read in place from the raw object."""

    kind: str
    name: str
    own_labels: Mapping[str, Any]
    own_annotations: Mapping[str, Any]
    template_path: tuple[str, ...]
    pod_labels: Mapping[str, Any]
    pod_annotations: Mapping[str, Any]
    pod_spec: Mapping[str, Any]

    @property
    def is_pod(self) -> bool:
        return not self.template_path

    @property
    def labels_path(self) -> str:
        """Where the pod labels live, as a person writes it: `spec.template.metadata.labels`."""
        return ".".join((*self.template_path, "metadata", "labels"))


def mapping_at(obj: Any, path: tuple[str, ...]) -> Mapping[str, Any] | None:
    """The mapping at `path` inside `obj`, or None where the path is missing or not a mapping.

    Decoded JSON objects are dicts; checking for `dict` rather than the `Mapping` ABC keeps this
    cheap on the admission path, where it runs a dozen times per review.
    """
    for key in path:
        if type(obj) is not dict:
            return None
        obj = obj.get(key)
    return obj if type(obj) is dict else None


def _looks_like_pod_template(template: Mapping[str, Any] | None) -> bool:
    spec = mapping_at(template, ("spec",))
    return spec is not None and isinstance(spec.get("containers"), list)


def find_workload(obj: Any, kind: str, name: str) -> Workload | None:
    """The workload in `obj`, or None if the object runs no pods.

    `kind` is the request's kind (what the API server says the object is), matched without regard
    to case. Built-in kinds always count, even with a malformed template, so that a broken
    Deployment is reported as missing its label rather than waved through.
    """
    if type(obj) is not dict:
        return None
    path = TEMPLATE_PATHS.get(kind.lower())
    if path is None:
        if not _looks_like_pod_template(mapping_at(obj, GENERIC_TEMPLATE_PATH)):
            return None
        path = GENERIC_TEMPLATE_PATH
    template = mapping_at(obj, path) or _EMPTY
    metadata = mapping_at(obj, ("metadata",)) or _EMPTY
    pod_metadata = mapping_at(template, ("metadata",)) or _EMPTY
    return Workload(
        kind=kind,
        name=name,
        own_labels=mapping_at(metadata, ("labels",)) or _EMPTY,
        own_annotations=mapping_at(metadata, ("annotations",)) or _EMPTY,
        template_path=path,
        pod_labels=mapping_at(pod_metadata, ("labels",)) or _EMPTY,
        pod_annotations=mapping_at(pod_metadata, ("annotations",)) or _EMPTY,
        pod_spec=mapping_at(template, ("spec",)) or _EMPTY,
    )


def containers(
    pod_spec: Mapping[str, Any], lists: tuple[str, ...] = CONTAINER_LISTS
) -> list[tuple[str, int, Mapping[str, Any]]]:
    """(list name, index, container) for every well-formed container in the given lists."""
    found: list[tuple[str, int, Mapping[str, Any]]] = []
    for list_name in lists:
        items = pod_spec.get(list_name)
        if isinstance(items, list):
            found.extend(
                (list_name, index, item) for index, item in enumerate(items) if type(item) is dict
            )
    return found
