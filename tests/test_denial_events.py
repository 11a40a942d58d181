"""Enforce-mode denials become Kubernetes Events, written asynchronously through the real client."""

from __future__ import annotations

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
from webhook.cluster.events import REASON, DenialEvents, denial_event
from webhook.cluster.static import ReportingApplier, StaticNamespaceSource
from webhook.config.policy_file import PolicyStore
from webhook.http.app import create_app
from webhook.policy.evaluate import Action

EVENTS = ResourceType("", "v1", "events", "Event", namespaced=True)


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
    controller = AdmissionController(store, StaticNamespaceSource(store), ReportingApplier())
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
    controller = AdmissionController(store, StaticNamespaceSource(store), ReportingApplier())
    outcome = controller.review(request(workload("Deployment")), Action.VALIDATE)
    assert (outcome.decision.allowed, outcome.mode) == (False, "enforce")
    for _ in range(5):
        recorder.observe(request(workload("Deployment")), Action.VALIDATE, outcome)
    assert (recorder._queue.qsize(), recorder.dropped) == (2, 3)
    now[0] = 1.0  # a second later the budget is back
    recorder.observe(request(workload("Deployment")), Action.VALIDATE, outcome)
    assert recorder._queue.qsize() == 3


def test_the_event_is_a_valid_core_v1_event() -> None:
    event = denial_event(request(workload("CronJob", name="nightly")), "x" * 5000, "pod-a")
    assert_schema_valid(event)
    assert len(event["message"]) == 1024
    assert event["metadata"]["name"].startswith("nightly.")
