"""The reviews the benchmark sends, built to the sizes the performance budget names.

Each is an AdmissionReview as the API server sends it, for the namespace `bench` (enforce mode,
NetworkPolicies reported, not applied: no cluster) or `bench-proxy` (proxy injection).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE = "egress-guard.io/profile"


@dataclass(frozen=True)
class Payload:
    name: str
    path: str
    """/validate or /mutate"""
    description: str
    review: dict[str, Any]

    def body(self) -> bytes:
        return json.dumps(self.review, separators=(",", ":")).encode()


def _managed_fields(manager: str, fields: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "manager": manager,
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": "2026-11-01T10:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        }
    ]


def _containers(count: int, env_per_container: int, value_size: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"app-{index}",
            "image": f"registry.example.com/team/service-{index}:1.24.{index}",
            "ports": [{"containerPort": 8080 + index, "protocol": "TCP", "name": f"http-{index}"}],
            "env": [
                {"name": f"SETTING_{index}_{n}", "value": ("v" * value_size)}
                for n in range(env_per_container)
            ],
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"},
            },
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080 + index}},
            "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True},
        }
        for index in range(count)
    ]


def deployment(
    name: str, labelled: bool, containers: int, env: int, value_size: int
) -> dict[str, Any]:
    pod_labels = {"app": name, "tier": "backend"}
    if labelled:
        pod_labels[PROFILE] = "stripe"
    spec = {
        "replicas": 3,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {"containers": _containers(containers, env, value_size)},
        },
    }
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "bench",
            "labels": {"app": name},
            "annotations": {},
        },
        "spec": spec,
    }
    last_applied = json.dumps(obj, separators=(",", ":"))
    obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = (
        last_applied
    )
    obj["metadata"]["managedFields"] = _managed_fields(
        "kubectl-client-side-apply",
        {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}, "f:template": {}}},
    )
    return obj


def pod(name: str, labelled: bool, containers: int, env: int, value_size: int) -> dict[str, Any]:
    labels = {"app": name, "pod-template-hash": "7d4b9c8f6"}
    if labelled:
        labels[PROFILE] = "none"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{name}-7d4b9c8f6-",
            "namespace": "bench",
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{name}-7d4b9c8f6",
                    "uid": "6f2d0c1e-0000-4000-8000-000000000002",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": _containers(containers, env, value_size),
            "serviceAccountName": "default",
            "restartPolicy": "Always",
        },
    }


def review(
    obj: dict[str, Any],
    *,
    namespace: str = "bench",
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    group, _, version = obj["apiVersion"].rpartition("/")
    kind = obj["kind"]
    resource = {"group": group, "version": version, "resource": kind.lower() + "s"}
    gvk = {"group": group, "version": version, "kind": kind}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "b1e3c7a2-5f0d-4c1b-9a8e-2d6f4b3a1c90",
            "kind": gvk,
            "resource": resource,
            "requestKind": gvk,
            "requestResource": resource,
            "name": obj["metadata"].get("name", ""),
            "namespace": namespace,
            "operation": operation,
            "userInfo": {
                "username": "kubernetes-admin",
                "groups": ["system:masters", "system:authenticated"],
            },
            "object": obj,
            "oldObject": old,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def payloads() -> list[Payload]:
    deploy6 = deployment("checkout", labelled=True, containers=2, env=8, value_size=47)
    deploy38 = deployment("catalog", labelled=True, containers=6, env=30, value_size=52)
    updated = json.loads(json.dumps(deploy6))
    updated["spec"]["replicas"] = 5
    proxied = pod("cart", labelled=True, containers=2, env=11, value_size=62)
    proxied["metadata"]["namespace"] = "bench-proxy"
    return [
        Payload(
            "pod-4k",
            "/validate",
            "Pod CREATE, allowed",
            review(pod("web", labelled=True, containers=2, env=11, value_size=62)),
        ),
        Payload(
            "deploy-6k",
            "/validate",
            "Deployment CREATE, allowed, policies ensured",
            review(deploy6),
        ),
        Payload(
            "update-6k",
            "/validate",
            "Deployment UPDATE with oldObject",
            review(updated, operation="UPDATE", old=deploy6),
        ),
        Payload("deploy-38k", "/validate", "Deployment CREATE, 38 KB", review(deploy38)),
        Payload(
            "denied-6k",
            "/validate",
            "Deployment CREATE without profile, denied",
            review(deployment("legacy", labelled=False, containers=2, env=8, value_size=47)),
        ),
        Payload(
            "mutate-proxy",
            "/mutate",
            "Pod CREATE with proxy injection",
            review(proxied, namespace="bench-proxy"),
        ),
    ]


BENCH_POLICY = """\
labelPrefix: egress-guard.io
proxy:
  url: http://egress-proxy.egress-system.svc.cluster.local:3128
  noProxy: [localhost, 127.0.0.1, .svc, .cluster.local]
  namespace: egress-system
  podSelector: {app: egress-proxy}
  port: 3128
profiles:
  none: {}
  stripe:
    allow:
      - cidr: 34.210.129.0/24
        ports: [443]
namespaces:
  bench: {mode: enforce, inject: networkpolicy}
  bench-proxy: {mode: enforce, inject: proxy}
"""


def write(directory: Path) -> list[tuple[Payload, Path]]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for payload in payloads():
        path = directory / f"{payload.name}.json"
        path.write_bytes(payload.body())
        written.append((payload, path))
    (directory / "policy.yaml").write_text(BENCH_POLICY)
    return written
