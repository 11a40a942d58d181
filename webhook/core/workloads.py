"""Which objects run pods, and where they keep the labels and containers of those pods.

`BUILTIN_KINDS` is the one table of the workload kinds egress-guard knows: everything else that
names kinds (the webhook rules, RBAC, the cluster listings, the namespace preview, the metrics)
is derived from it, plus the extra kinds a policy file declares (`workloadKinds`). Kinds are
matched by API group and kind together: a Volcano `batch.volcano.sh` Job is not a `batch` Job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.findings import Subject
from webhook.core.raw_object import mapping_at, section

GENERIC_TEMPLATE_PATH = ("spec", "template")
"""Any other kind counts as a workload when it has a pod template here (e.g. an Argo Rollout)."""


@dataclass(frozen=True, slots=True)
class WorkloadKind:
    """A kind of object that runs pods: its API coordinates and where its pod template lives."""

    group: str
    version: str
    kind: str
    resource: str
    """The plural resource name, as webhook rules, RBAC and API paths spell it."""
    template_path: tuple[str, ...] = GENERIC_TEMPLATE_PATH
    """Where the pod template is (empty: the object is the pod)."""
    equivalent_groups: tuple[str, ...] = ()
    """Groups that served the same resource in older releases (extensions/v1beta1 Deployments):
    webhook rules with `matchPolicy: Equivalent` receive those too, converted."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """(API group, kind): what identifies the kind, whatever the version."""
        return (self.group, self.kind)

    @property
    def qualified(self) -> str:
        """`Kind.group` (just `Kind` in the core group), as a person reads it."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


_LEGACY = ("extensions",)

BUILTIN_KINDS: tuple[WorkloadKind, ...] = (
    WorkloadKind("apps", "v1", "Deployment", "deployments", equivalent_groups=_LEGACY),
    WorkloadKind("apps", "v1", "StatefulSet", "statefulsets"),
    WorkloadKind("apps", "v1", "DaemonSet", "daemonsets", equivalent_groups=_LEGACY),
    WorkloadKind("batch", "v1", "CronJob", "cronjobs", ("spec", "jobTemplate", "spec", "template")),
    WorkloadKind("batch", "v1", "Job", "jobs"),
    WorkloadKind("", "v1", "ReplicationController", "replicationcontrollers"),
    WorkloadKind("apps", "v1", "ReplicaSet", "replicasets", equivalent_groups=_LEGACY),
    WorkloadKind("", "v1", "Pod", "pods", ()),
)
"""The built-in workload kinds, owners before what they own (a listing cut short still holds the
owners that the namespace preview reports)."""

_BUILTIN: Mapping[tuple[str, str], WorkloadKind] = {
    (group, k.kind.lower()): k for k in BUILTIN_KINDS for group in (k.group, *k.equivalent_groups)
}
_BUILTIN_BY_KIND: Mapping[str, WorkloadKind] = {k.kind.lower(): k for k in BUILTIN_KINDS}


def builtin_kind(group: str | None, kind: str) -> WorkloadKind | None:
    """The built-in kind with this group and kind (kind without regard to case).

    `group` None means the group is not known (data without an apiVersion, which the API server
    always sets): the kind alone decides then.
    """
    if group is None:
        return _BUILTIN_BY_KIND.get(kind.lower())
    return _BUILTIN.get((group, kind.lower()))


def group_of(api_version: Any) -> str | None:
    """The API group in an apiVersion (`apps/v1`: apps; `v1`: the core group ""), or None."""
    if not isinstance(api_version, str) or not api_version:
        return None
    group, _, _ = api_version.rpartition("/")
    return group


CONTAINER_LISTS = ("initContainers", "containers")
"""Container lists a pod is created with (ephemeral containers arrive later, by subresource)."""


@dataclass(frozen=True, slots=True)
class Workload:
    """A workload object and its pod template, read in place from the raw object."""

    kind: str
    name: str
    own_labels: Mapping[str, Any]
    template_path: tuple[str, ...]
    pod_labels: Mapping[str, Any]
    pod_annotations: Mapping[str, Any]
    pod_spec: Mapping[str, Any]

    @property
    def is_pod(self) -> bool:
        return not self.template_path

    @property
    def subject(self) -> Subject:
        """What findings about it name: `Deployment "web"`."""
        return Subject(self.kind, self.name)

    @property
    def labels_path(self) -> str:
        """Where the pod labels live, as a person writes it: `spec.template.metadata.labels`."""
        return ".".join((*self.template_path, "metadata", "labels"))


def _looks_like_pod_template(template: Mapping[str, Any] | None) -> bool:
    spec = mapping_at(template, "spec")
    return spec is not None and isinstance(spec.get("containers"), list)


def find_workload(obj: Any, kind: str, name: str = "", group: str | None = None) -> Workload | None:
    """The workload in `obj`, or None if the object runs no pods.

    `name` is what findings call it (reading a profile needs none). `kind` is the request's kind
    (what the API server says the object is), matched without regard to case, within `group`:
    the API group, or None to read it from the object's apiVersion.
    Built-in kinds always count, even with a malformed template, so that a broken Deployment is
    reported as missing its label rather than waved through; any other kind counts when it has a
    pod template at `spec.template`.
    """
    if type(obj) is not dict:
        return None
    known = builtin_kind(group_of(obj.get("apiVersion")) if group is None else group, kind)
    if known is not None:
        path = known.template_path
    elif _looks_like_pod_template(mapping_at(obj, *GENERIC_TEMPLATE_PATH)):
        path = GENERIC_TEMPLATE_PATH
    else:
        return None
    template = section(obj, *path)
    metadata = section(obj, "metadata")
    pod_metadata = section(template, "metadata")
    return Workload(
        kind=kind,
        name=name,
        own_labels=section(metadata, "labels"),
        template_path=path,
        pod_labels=section(pod_metadata, "labels"),
        pod_annotations=section(pod_metadata, "annotations"),
        pod_spec=section(template, "spec"),
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
