"""Builders for workloads, admission requests and reviews, shared by the tests."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from webhook.core.policy import Policy
from webhook.core.request import AdmissionRequest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
PROFILE = "egress-guard.io/profile"
MODE = "egress-guard.io/mode"
INJECT = "egress-guard.io/inject"
BACKENDS = "egress-guard.io/backends"


def ns_labels(mode: str | None = "enforce", inject: str | None = None) -> dict[str, str]:
    labels: dict[str, str] = {}
    if mode is not None:
        labels[MODE] = mode
    if inject is not None:
        labels[INJECT] = inject
    return labels


def namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def placed(obj: dict[str, Any], namespace_name: str) -> dict[str, Any]:
    """The object in a namespace (builders make objects without one)."""
    return {**obj, "metadata": {**obj["metadata"], "namespace": namespace_name}}


def policy_names(api: Any, namespace_name: str) -> list[str]:
    """Names of the NetworkPolicies in a namespace of a LocalApiServer."""
    return [obj["metadata"]["name"] for obj in api.objects("networkpolicies", namespace_name)]


def container(name: str = "app", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "registry.example/app:1", **extra}


def pod_spec(*containers_: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"containers": list(containers_) or [container()], **extra}


def pod(
    labels: Mapping[str, str] | None = None, spec: dict[str, Any] | None = None, **meta: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web", **meta}
    if labels is not None:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec or pod_spec()}


def template(
    labels: Mapping[str, str] | None, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    metadata = {"labels": dict(labels)} if labels is not None else {}
    return {"metadata": metadata, "spec": spec or pod_spec()}


API_VERSIONS = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1",
    "ReplicationController": "v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "Rollout": "argoproj.io/v1alpha1",
}


def workload(
    kind: str,
    pod_labels: Mapping[str, str] | None = None,
    own_labels: Mapping[str, str] | None = None,
    name: str = "web",
) -> dict[str, Any]:
    """A workload of any kind with its pod template's labels (a Pod's own labels for Pods)."""
    if kind == "Pod":
        return pod(pod_labels, name=name)
    metadata: dict[str, Any] = {"name": name}
    if own_labels is not None:
        metadata["labels"] = dict(own_labels)
    tpl = template(pod_labels)
    spec: dict[str, Any]
    if kind == "CronJob":
        spec = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": tpl}}}
    else:
        spec = {"selector": {"matchLabels": {"app": name}}, "template": tpl}
    return {"apiVersion": API_VERSIONS[kind], "kind": kind, "metadata": metadata, "spec": spec}


WORKLOAD_KINDS = ["Pod", *API_VERSIONS]


def request(
    obj: Mapping[str, Any] | None,
    *,
    operation: str = "CREATE",
    namespace: str = "payments",
    old: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    sub_resource: str = "",
    kind: str | None = None,
) -> AdmissionRequest:
    kind = kind or (str(obj["kind"]) if obj else "Pod")
    return AdmissionRequest(
        uid="0a1b2c3d-0000-4000-8000-000000000001",
        kind=kind,
        operation=operation,
        namespace=namespace,
        name=str(obj["metadata"].get("name", "")) if obj else "",
        sub_resource=sub_resource,
        dry_run=dry_run,
        object=obj,
        old_object=old,
    )


def review_document(
    obj: Mapping[str, Any] | None,
    *,
    operation: str = "CREATE",
    namespace: str = "payments",
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002",
    api_version: str = "admission.k8s.io/v1",
    **extra: Any,
) -> dict[str, Any]:
    """An AdmissionReview as the API server sends it."""
    kind = str(obj["kind"]) if obj else "Pod"
    group, _, version = (str(obj["apiVersion"]) if obj else "v1").rpartition("/")
    plural = kind.lower() + "s"
    req: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": plural},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": plural},
        "name": obj["metadata"].get("name", "") if obj else "",
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
        "object": obj,
        "oldObject": None,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        **extra,
    }
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": req}


def owned(obj: dict[str, Any], kind: str = "ReplicaSet", name: str = "web-1") -> dict[str, Any]:
    """The object with a controller ownerReference, as a controller's Pods have."""
    obj["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": True}
    ]
    return obj


def network_policy_request(
    operation: str,
    new: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None = None,
    *,
    namespace: str = "payments",
    user: str = "alice",
    groups: tuple[str, ...] = ("system:authenticated",),
) -> AdmissionRequest:
    """A NetworkPolicy review as the API server sends it (DELETE: only the old object)."""
    named = new if new is not None else old
    assert named is not None
    return AdmissionRequest(
        uid="np",
        kind="NetworkPolicy",
        group="networking.k8s.io",
        version="v1",
        operation=operation,
        namespace=namespace,
        name=str(named["metadata"]["name"]),
        object=new,
        old_object=old,
        user=user,
        groups=groups,
    )


def policy_with(policy: Policy, **changes: Any) -> Policy:
    """A policy with some top-level fields replaced, given as in the file and validated afresh
    (model_copy would skip validation)."""
    document = policy.model_dump(by_alias=True)
    document.update(changes)
    return Policy.model_validate(document)


def apply_patch(obj: Mapping[str, Any], ops: Any) -> dict[str, Any]:
    """Apply JSONPatch operations with an independent implementation (the jsonpatch package)."""
    import jsonpatch

    return jsonpatch.JsonPatch(list(ops)).apply(copy.deepcopy(dict(obj)))


def response(decision: Any) -> dict[str, Any]:
    """The AdmissionReview response the API server would receive for a decision: what tests of
    behaviour assert on, whatever shape the decision has inside."""
    from webhook.admission.review import response_document

    document = response_document("admission.k8s.io/v1", "uid-1", decision)
    return dict(document["response"])


def load_documents(text: str) -> list[dict[str, Any]]:
    """The mappings of a YAML stream (empty documents skipped)."""
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]
