"""The HTTP transport through Flask's test client: answers, bad input, and the decision log."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import orjson
import pytest
from builders import PROFILE, apply_patch, pod, review_document, workload
from flask import Flask
from flask.testing import FlaskClient

from webhook.admission.controller import AdmissionController
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import FixedPolicy
from webhook.core.policy import Policy
from webhook.http.app import create_app

MAX_BODY = 64 * 1024


@pytest.fixture
def app(policy: Policy) -> Flask:
    source = FixedPolicy(policy)
    controller = AdmissionController(
        source, StaticNamespaceSource(source), ReportingNetworkPolicyApplier()
    )
    return create_app(controller, max_body_bytes=MAX_BODY)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, path: str, document: Any) -> Any:
    return client.post(path, data=orjson.dumps(document), content_type="application/json")


def response_of(reply: Any) -> dict[str, Any]:
    assert reply.status_code == 200, reply.data
    body = reply.get_json()
    assert body["kind"] == "AdmissionReview"
    return body["response"]  # type: ignore[no-any-return]


class TestAnswers:
    def test_denial_echoes_uid_and_api_version_with_a_403_status(self, client: FlaskClient) -> None:
        document = review_document(workload("Deployment"), uid="u-1")
        reply = post(client, "/validate", document)
        body = reply.get_json()
        assert body["apiVersion"] == "admission.k8s.io/v1"
        response = body["response"]
        assert response["uid"] == "u-1"
        assert response["allowed"] is False
        assert response["status"]["code"] == 403
        assert response["status"]["reason"] == "Forbidden"
        assert PROFILE in response["status"]["message"]
        assert "patch" not in response and "patchType" not in response

    def test_v1beta1_reviews_are_answered_in_v1beta1(self, client: FlaskClient) -> None:
        document = review_document(workload("Deployment"), api_version="admission.k8s.io/v1beta1")
        assert post(client, "/validate", document).get_json()["apiVersion"] == (
            "admission.k8s.io/v1beta1"
        )

    def test_allowed_review_has_no_status_and_no_patch(self, client: FlaskClient) -> None:
        response = response_of(post(client, "/validate", review_document(pod({PROFILE: "none"}))))
        assert response["allowed"] is True
        assert "status" not in response and "patch" not in response

    def test_mutation_returns_a_base64_json_patch(self, client: FlaskClient) -> None:
        obj = pod({PROFILE: "none"})
        response = response_of(post(client, "/mutate", review_document(obj, namespace="legacy")))
        assert response["allowed"] is True
        assert response["patchType"] == "JSONPatch"
        ops = json.loads(base64.b64decode(response["patch"]))
        result = apply_patch(obj, ops)
        names = {e["name"] for e in result["spec"]["containers"][0]["env"]}
        assert {"HTTP_PROXY", "https_proxy", "NO_PROXY"} <= names

    def test_mutation_that_changes_nothing_has_no_patch_type(self, client: FlaskClient) -> None:
        response = response_of(post(client, "/mutate", review_document(pod({PROFILE: "none"}))))
        assert response["allowed"] is True
        assert "patchType" not in response and "patch" not in response

    def test_warn_namespace_returns_warnings(self, client: FlaskClient) -> None:
        response = response_of(
            post(client, "/validate", review_document(pod(), namespace="staging"))
        )
        assert response["allowed"] is True
        assert response["warnings"]
        assert all(len(w) <= 120 for w in response["warnings"])

    def test_audit_namespace_returns_audit_annotations(self, client: FlaskClient) -> None:
        response = response_of(
            post(client, "/validate", review_document(pod(), namespace="sandbox"))
        )
        assert response["allowed"] is True
        assert "violation" in response["auditAnnotations"]

    def test_no_cluster_reports_the_policies_it_would_create(self, client: FlaskClient) -> None:
        document = review_document(workload("Deployment", {PROFILE: "stripe"}))
        response = response_of(post(client, "/validate", document))
        assert response["allowed"] is True
        assert any("would ensure" in w and "default-deny" in w for w in response["warnings"])

    def test_dry_run_reports_and_applies_nothing(self, client: FlaskClient) -> None:
        document = review_document(workload("Deployment", {PROFILE: "stripe"}), dryRun=True)
        response = response_of(post(client, "/validate", document))
        assert response["allowed"] is True
        assert any("dry run" in w for w in response["warnings"])

    def test_content_type_with_charset_is_accepted(self, client: FlaskClient) -> None:
        reply = client.post(
            "/validate",
            data=orjson.dumps(review_document(pod())),
            content_type="application/json; charset=utf-8",
        )
        assert reply.status_code == 200


def deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


BAD_INPUT = [
    pytest.param(b"", "application/json", 400, "empty body", id="empty-body"),
    pytest.param(b"{not json", "application/json", 400, "not valid JSON", id="not-json"),
    pytest.param(b"[1, 2]", "application/json", 400, "not a JSON object", id="json-array"),
    pytest.param(b'"review"', "application/json", 400, "not a JSON object", id="json-string"),
    pytest.param(b"{}", "application/json", 400, "kind", id="empty-object"),
    pytest.param(
        b'{"apiVersion":"v1","kind":"Pod"}', "application/json", 400, "AdmissionReview", id="a-pod"
    ),
    pytest.param(
        b'{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"x"}}',
        "application/json",
        400,
        "not supported",
        id="unknown-version",
    ),
    pytest.param(
        b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}',
        "application/json",
        400,
        "no request",
        id="no-request",
    ),
    pytest.param(
        b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{}}}',
        "application/json",
        400,
        "uid",
        id="no-uid",
    ),
    pytest.param(
        b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}',
        "application/json",
        400,
        "uid",
        id="uid-not-a-string",
    ),
    pytest.param(b'{"a": 1}', "text/plain", 415, "Content-Type", id="text-plain"),
    pytest.param(b'{"a": 1}', None, 415, "Content-Type", id="no-content-type"),
    pytest.param(deep(5000), "application/json", 400, "not valid JSON", id="deeply-nested"),
    pytest.param(b"\xff\xfe\xfd", "application/json", 400, "not valid JSON", id="not-utf8"),
]


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
@pytest.mark.parametrize(("body", "content_type", "status", "message"), BAD_INPUT)
def test_bad_input_gets_a_clear_4xx_and_no_stack_trace(
    client: FlaskClient, path: str, body: bytes, content_type: str | None, status: int, message: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    reply = client.post(path, data=body, headers=headers)
    assert reply.status_code == status
    error = reply.get_json()["error"]
    assert message in error
    assert "Traceback" not in reply.get_data(as_text=True)


def test_a_body_over_the_limit_is_refused_from_its_length_alone(client: FlaskClient) -> None:
    class Exploding:
        """A body that fails the test if the server reads it: the limit must act on the header."""

        def read(self, *_: Any) -> bytes:
            raise AssertionError("the body was read")

    reply = client.post(
        "/validate",
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": str(MAX_BODY + 1), "wsgi.input": Exploding()},
    )
    assert reply.status_code == 413
    assert "error" in reply.get_json()


def test_a_chunked_body_over_the_limit_is_refused(client: FlaskClient) -> None:
    """gunicorn decodes chunked bodies and marks the stream terminated, as simulated here."""
    body = b'{"pad":"' + b"x" * (MAX_BODY + 10) + b'"}'
    reply = client.post(
        "/validate",
        data=body,
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert reply.status_code == 413


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/validate", 405), ("PUT", "/mutate", 405), ("GET", "/nope", 404)],
)
def test_wrong_method_or_path_is_json(
    client: FlaskClient, method: str, path: str, status: int
) -> None:
    reply = client.open(path, method=method)
    assert reply.status_code == status
    assert "error" in reply.get_json()


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_readiness_reports_why_it_is_not_ready(policy: Policy) -> None:
    source = FixedPolicy(policy)
    controller = AdmissionController(
        source, StaticNamespaceSource(source), ReportingNetworkPolicyApplier()
    )
    app = create_app(controller, ready=lambda: "policy not loaded")
    reply = app.test_client().get("/readyz")
    assert reply.status_code == 503
    assert "policy not loaded" in reply.get_data(as_text=True)


def test_one_structured_log_line_per_decision(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="egress_guard.decision")
    post(client, "/validate", review_document(workload("Deployment"), uid="log-1"))
    records = [r for r in caplog.records if r.name == "egress_guard.decision"]
    assert len(records) == 1
    fields = records[0].fields  # type: ignore[attr-defined]
    assert fields["uid"] == "log-1"
    assert fields["namespace"] == "payments"
    assert fields["kind"] == "Deployment"
    assert fields["name"] == "web"
    assert fields["operation"] == "CREATE"
    assert fields["verdict"] == "denied"
    assert fields["dryRun"] is False
    assert fields["reasons"] and PROFILE in fields["reasons"][0]
    assert fields["checks"] == ["profile-label"]
    assert fields["latencyMs"] >= 0


def test_an_internal_error_is_an_errored_review_not_a_500(policy: Policy) -> None:
    class BrokenSource:
        def labels(self, namespace: str) -> None:
            raise RuntimeError("boom")

    source = FixedPolicy(policy)
    controller = AdmissionController(source, BrokenSource(), ReportingNetworkPolicyApplier())  # type: ignore[arg-type]
    reply = post(create_app(controller).test_client(), "/validate", review_document(pod()))
    response = response_of(reply)
    assert response["allowed"] is False
    assert response["status"]["code"] == 500
    assert "boom" not in response["status"]["message"]
