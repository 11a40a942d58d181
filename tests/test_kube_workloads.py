"""The namespace preview against a cluster: workloads listed through the real Kubernetes client
from the local API server, bounded in number and time, wired in by the composition root."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builders import MODE, PROFILE, pod, workload
from kubernetes import client
from local_apiserver import Fault, LocalApiServer

from webhook.admission.controller import AdmissionController
from webhook.admission.ports import WorkloadsUnavailable
from webhook.cluster.client import api_client
from webhook.cluster.kube_workloads import KubeWorkloadSource
from webhook.config.settings import ServeSettings
from webhook.core.evaluate import Action
from webhook.core.request import AdmissionRequest
from webhook.core.workloads import BUILTIN_KINDS
from webhook.serving.compose import build_components


def in_namespace(
    obj: dict[str, Any], namespace: str = "payments", owner: str = ""
) -> dict[str, Any]:
    obj["metadata"]["namespace"] = namespace
    if owner:
        kind, _, name = owner.partition("/")
        obj["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": kind,
                "name": name,
                "uid": f"uid-{name}",
                "controller": True,
            }
        ]
    return obj


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


@pytest.fixture
def seeded(local_api: LocalApiServer) -> LocalApiServer:
    """payments runs a Deployment without a profile (with its ReplicaSet and Pods), a labelled
    StatefulSet, a CronJob without one, and a bare Pod; another namespace runs one more Pod."""
    stateful_set = workload("StatefulSet", {PROFILE: "none"}, name="db")
    stateful_set["spec"]["serviceName"] = "db"
    local_api.seed(
        namespace("payments"),
        namespace("other"),
        in_namespace(workload("Deployment", {"app": "api"}, name="api")),
        in_namespace(
            workload("ReplicaSet", {"app": "api"}, name="api-7f9"), owner="Deployment/api"
        ),
        in_namespace(pod({"app": "api"}, name="api-7f9-a"), owner="ReplicaSet/api-7f9"),
        in_namespace(pod({"app": "api"}, name="api-7f9-b"), owner="ReplicaSet/api-7f9"),
        in_namespace(stateful_set),
        in_namespace(workload("CronJob", {"app": "report"}, name="report")),
        in_namespace(pod({"app": "debug"}, name="debug")),
        in_namespace(pod({}, name="elsewhere"), namespace="other"),
    )
    local_api.reset_calls()
    return local_api


@pytest.fixture
def api(kubeconfig: Path) -> Iterator[client.ApiClient]:
    connection = api_client("kubeconfig", kubeconfig=str(kubeconfig))
    try:
        yield connection
    finally:
        connection.close()  # type: ignore[no-untyped-call]


def test_every_preview_kind_is_listed_with_kind_and_api_version(
    seeded: LocalApiServer, api: client.ApiClient
) -> None:
    listing = KubeWorkloadSource(api).workloads("payments")
    assert listing.complete
    found = {(o["kind"], o["apiVersion"], o["metadata"]["name"]) for o in listing.workloads}
    assert found == {
        ("Deployment", "apps/v1", "api"),
        ("ReplicaSet", "apps/v1", "api-7f9"),
        ("Pod", "v1", "api-7f9-a"),
        ("Pod", "v1", "api-7f9-b"),
        ("StatefulSet", "apps/v1", "db"),
        ("CronJob", "batch/v1", "report"),
        ("Pod", "v1", "debug"),
    }
    listed = {call.resource for call in seeded.calls if call.verb == "list"}
    assert {call.namespace for call in seeded.calls} == {"payments"}
    assert len(listed) == len(BUILTIN_KINDS) == len(seeded.calls), "one list call per kind"
    assert [kind for kind, _, _ in KubeWorkloadSource(api).lists] == [
        kind.kind for kind in BUILTIN_KINDS
    ]


def test_a_listing_cut_by_the_limit_is_incomplete(
    seeded: LocalApiServer, api: client.ApiClient
) -> None:
    listing = KubeWorkloadSource(api, limit=2).workloads("payments")
    assert not listing.complete
    assert sum(1 for o in listing.workloads if o["kind"] == "Pod") == 2


def test_a_slow_api_is_cut_at_the_budget(seeded: LocalApiServer, api: client.ApiClient) -> None:
    seeded.add_fault(Fault(verb="list", resource="replicasets", delay_s=3.0))
    started = time.monotonic()
    listing = KubeWorkloadSource(api, budget_s=0.6).workloads("payments")
    assert time.monotonic() - started < 1.5
    assert not listing.complete
    kinds = {o["kind"] for o in listing.workloads}
    assert {"Deployment", "CronJob"} <= kinds and "Pod" not in kinds


def test_a_kind_it_may_not_list_is_skipped(seeded: LocalApiServer, api: client.ApiClient) -> None:
    seeded.add_fault(Fault(verb="list", resource="pods", status=403, reason="Forbidden"))
    listing = KubeWorkloadSource(api).workloads("payments")
    assert not listing.complete
    assert "Pod" not in {o["kind"] for o in listing.workloads}
    assert "Deployment" in {o["kind"] for o in listing.workloads}


def test_an_unreachable_api_is_unavailable(seeded: LocalApiServer, api: client.ApiClient) -> None:
    seeded.go_down()
    with pytest.raises(WorkloadsUnavailable, match="refused"):
        KubeWorkloadSource(api, budget_s=1.0).workloads("payments")


def label_review(name: str, mode: str) -> AdmissionRequest:
    old = namespace(name)
    new = namespace(name, **{MODE: mode})
    return AdmissionRequest(
        uid="label-1",
        kind="Namespace",
        version="v1",
        operation="UPDATE",
        name=name,
        namespace=name,
        dry_run=True,
        object=new,
        old_object=old,
    )


def test_the_composed_server_previews_a_namespace_label_from_the_cluster(
    seeded: LocalApiServer, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    components = build_components(ServeSettings(cluster="kubeconfig"))
    try:
        assert isinstance(components.workloads, KubeWorkloadSource)
        controller = AdmissionController(
            components.policies,
            components.namespaces,
            components.network_policies,
            components.workloads,
        )
        decision = controller.review(label_review("payments", "enforce"), Action.VALIDATE).decision
    finally:
        components.close()  # both watches, and the connection
    assert decision.allowed
    assert decision.warnings[0] == (
        "egress-guard: 3 existing workloads in payments lack a valid egress profile; "
        "enforce refuses them and their new pods"
    )
    named = " | ".join(decision.warnings[1:])
    for subject in ('Deployment "api"', 'CronJob "report"', 'Pod "debug"'):
        assert subject in named
    assert "api-7f9" not in named, "owned objects are reported through their owner"
    assert seeded.count(writes=True) == 0, "a preview writes nothing"
