"""Enforce-mode denials become Kubernetes Events, written asynchronously through the real client."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import PROFILE, request, review_document, workload
from flask.testing import FlaskClient
from local_apiserver import RESOURCES, Fault, LocalApiServer, ResourceType
from openapi_schema import assert_schema_valid

from webhook.admission.controller import AdmissionController
from webhook.cluster.client import api_client
from webhook.cluster.events import REASON, DenialEvents, denial_event, event_name
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import PolicyStore
from webhook.core.evaluate import Action
from webhook.http.app import create_app
from webhook.http.metrics import WebhookMetrics

EVENTS = ResourceType("", "v1", "events", "Event", namespaced=True)
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@pytest.fixture
def api_server() -> Iterator[LocalApiServer]:
    resources = RESOURCES if any(r.plural == "events" for r in RESOURCES) else (*RESOURCES, EVENTS)
    with LocalApiServer(resources=resources, max_lifetime_s=60) as api:
        for name in ("payments", "staging"):
            api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        yield api


@pytest.fixture
def recorder(api_server: LocalApiServer, tmp_path: Path) -> DenialEvents:
    kubeconfig = api_server.kubeconfig(tmp_path / "kubeconfig")
    return DenialEvents(api_client("kubeconfig", kubeconfig=str(kubeconfig)), instance="pod-a")


def client_with(recorder: DenialEvents) -> FlaskClient:
    store = PolicyStore(None)  # payments: enforce, staging: warn (the example's namespaces table)
    controller = AdmissionController(
        store, StaticNamespaceSource(store), ReportingNetworkPolicyApplier()
    )
    return create_app(controller, on_review=recorder.observe).test_client()


def post(client: FlaskClient, path: str, document: Any) -> Any:
    reply = client.post(path, data=orjson.dumps(document), content_type="application/json")
    assert reply.status_code == 200
    return reply.get_json()["response"]


def test_an_enforce_denial_is_recorded_on_the_workload(
    api_server: LocalApiServer, recorder: DenialEvents
) -> None:
    client = client_with(recorder)
    answer = post(client, "/validate", review_document(workload("Deployment", name="api")))
    assert answer["allowed"] is False
    assert recorder.flush()
    events = api_server.objects("events", "payments")
    assert len(events) == 1
    event = events[0]
    assert (event["reason"], event["type"]) == (REASON, "Warning")
    assert event["involvedObject"] == {
        "kind": "Deployment",
        "namespace": "payments",
        "name": "api",
        "apiVersion": "apps/v1",
    }
    assert event["message"] == answer["status"]["message"]
    assert event["reportingInstance"] == "pod-a" and recorder.written == 1


@pytest.mark.parametrize(
    ("path", "document"),
    [
        pytest.param("/validate", review_document(workload("Job"), namespace="staging"), id="warn"),
        pytest.param(
            "/validate", review_document(workload("Job", {PROFILE: "none"})), id="allowed"
        ),
        pytest.param("/validate", review_document(workload("Job"), dryRun=True), id="dry-run"),
        pytest.param("/mutate", review_document(workload("Pod")), id="mutation"),
    ],
)
def test_nothing_else_is_recorded(
    api_server: LocalApiServer, recorder: DenialEvents, path: str, document: Any
) -> None:
    post(client_with(recorder), path, document)
    assert recorder.flush()
    assert api_server.objects("events") == []
    assert api_server.count("create", "events") == 0


def test_the_answer_never_waits_for_the_event(
    api_server: LocalApiServer, recorder: DenialEvents
) -> None:
    api_server.add_fault(Fault(verb="create", resource="events", delay_s=1.5))
    client = client_with(recorder)
    started = time.monotonic()
    post(client, "/validate", review_document(workload("Deployment")))
    assert time.monotonic() - started < 0.5
    assert recorder.flush(timeout_s=5)
    assert len(api_server.objects("events", "payments")) == 1


def test_an_unreachable_api_costs_a_log_line_not_a_review(
    api_server: LocalApiServer, recorder: DenialEvents
) -> None:
    api_server.go_down()
    answer = post(client_with(recorder), "/validate", review_document(workload("Deployment")))
    assert answer["allowed"] is False
    assert recorder.flush(timeout_s=5)
    assert (recorder.written, recorder.failed) == (0, 1)


def test_a_burst_is_rate_limited_and_dropped_events_are_counted() -> None:
    now = [0.0]
    recorder = DenialEvents(api=None, per_second=2.0, clock=lambda: now[0])
    recorder._ensure_writer = lambda: None  # type: ignore[method-assign]  # count, write nothing
    store = PolicyStore(None)
    controller = AdmissionController(
        store, StaticNamespaceSource(store), ReportingNetworkPolicyApplier()
    )
    outcome = controller.review(request(workload("Deployment")), Action.VALIDATE)
    assert (outcome.decision.allowed, outcome.mode) == (False, "enforce")
    for _ in range(5):
        recorder.observe(request(workload("Deployment")), Action.VALIDATE, outcome)
    assert (recorder._queue.qsize(), recorder.dropped) == (2, 3)
    now[0] = 1.0  # a second later the budget is back
    recorder.observe(request(workload("Deployment")), Action.VALIDATE, outcome)
    assert recorder._queue.qsize() == 3


def generated_pod(owners: list[dict[str, Any]]) -> dict[str, Any]:
    """A pod as a ReplicaSet asks for one: no name yet, only generateName."""
    obj = workload("Pod", {"app": "web"})
    obj["metadata"] = {
        "generateName": "web-7d9f8c6b5-",
        "labels": {"app": "web"},
        "ownerReferences": owners,
    }
    return obj


REPLICA_SET_OWNER = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "web-7d9f8c6b5",
    "uid": "6b0c3c3e-9a51-4a8e-8a43-1f1e0c7b2d11",
    "controller": True,
    "blockOwnerDeletion": True,
}


def test_a_pod_named_by_generate_name_is_recorded_on_its_controller(
    api_server: LocalApiServer, recorder: DenialEvents
) -> None:
    document = review_document(generated_pod([REPLICA_SET_OWNER]))
    document["request"].pop("name", None)
    answer = post(client_with(recorder), "/validate", document)
    assert answer["allowed"] is False
    assert recorder.flush()
    assert (recorder.written, recorder.failed) == (1, 0)
    (event,) = api_server.objects("events", "payments")
    assert event["involvedObject"] == {
        "kind": "ReplicaSet",
        "namespace": "payments",
        "name": "web-7d9f8c6b5",
        "apiVersion": "apps/v1",
        "uid": REPLICA_SET_OWNER["uid"],
    }
    assert event["metadata"]["name"].startswith("web-7d9f8c6b5.")


def test_an_unnamed_object_without_a_controller_is_recorded_on_its_namespace(
    api_server: LocalApiServer, recorder: DenialEvents
) -> None:
    owner = {**REPLICA_SET_OWNER, "controller": False}
    document = review_document(generated_pod([owner]))
    document["request"].pop("name", None)
    post(client_with(recorder), "/validate", document)
    assert recorder.flush()
    (event,) = api_server.objects("events", "payments")
    assert event["involvedObject"] == {
        "kind": "Namespace",
        "apiVersion": "v1",
        "namespace": "payments",
        "name": "payments",
    }


@pytest.mark.parametrize(
    "base",
    [
        pytest.param("web-", id="generate-name"),
        pytest.param("Web_API.v2-", id="upper-case-and-underscore"),
        pytest.param("a" * 300, id="too-long"),
        pytest.param("-.-", id="nothing-valid"),
    ],
)
def test_event_names_are_dns_subdomains(base: str) -> None:
    name = event_name(base)
    assert len(name) <= 253
    assert DNS_SUBDOMAIN.fullmatch(name), name


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_writer_survives_an_unexpected_error_and_is_restarted_if_it_dies(
    api_server: LocalApiServer, recorder: DenialEvents
) -> None:
    create = recorder._create
    failures: list[BaseException] = [RuntimeError("unexpected"), SystemExit(1)]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)  # the first kills nothing; the second ends the thread
        return create(*args, **kwargs)

    recorder._create = flaky  # type: ignore[method-assign]
    client = client_with(recorder)
    for uid in ("one", "two", "three"):
        post(client, "/validate", review_document(workload("Deployment", name=uid), uid=uid))
        assert recorder.flush(timeout_s=5)
        time.sleep(0.05)  # the writer thread ends after its last task is marked done
    assert (recorder.written, recorder.failed) == (1, 2)
    assert [e["involvedObject"]["name"] for e in api_server.objects("events")] == ["three"]


def test_event_outcomes_are_exported_as_metrics(api_server: LocalApiServer, tmp_path: Path) -> None:
    metrics = WebhookMetrics()
    kubeconfig = api_server.kubeconfig(tmp_path / "kubeconfig")
    recorder = DenialEvents(
        api_client("kubeconfig", kubeconfig=str(kubeconfig)),
        per_second=1.0,
        count=metrics.denial_event,
    )
    client = client_with(recorder)
    for uid in ("one", "two"):
        post(client, "/validate", review_document(workload("Deployment"), uid=uid))
    assert recorder.flush()
    text = metrics.exposition().decode()
    assert 'egress_guard_denial_events_total{result="written"} 1.0' in text
    assert 'egress_guard_denial_events_total{result="dropped"} 1.0' in text


def test_the_event_is_a_valid_core_v1_event() -> None:
    event = denial_event(request(workload("CronJob", name="nightly")), "x" * 5000, "pod-a")
    assert_schema_valid(event)
    assert len(event["message"]) == 1024
    assert event["metadata"]["name"].startswith("nightly.")


def test_an_outage_in_enforce_is_not_recorded_as_a_policy_denial(
    api_server: LocalApiServer, recorder: DenialEvents
) -> None:
    """A workload refused because the cluster did not answer was not denied by the policy: an
    EgressPolicyDenied Event would send its owner looking for a fault that is not theirs."""

    class FailingApplier:
        def ensure(self, intent: Any) -> Any:
            from webhook.admission.ports import NetworkPoliciesNotEnsured

            raise NetworkPoliciesNotEnsured("the Kubernetes API did not answer in time")

    store = PolicyStore(None)
    controller = AdmissionController(store, StaticNamespaceSource(store), FailingApplier())
    client = create_app(controller, on_review=recorder.observe).test_client()
    answer = post(client, "/validate", review_document(workload("Deployment", {PROFILE: "none"})))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 503
    assert recorder.flush()
    assert api_server.count("create", "events") == 0
