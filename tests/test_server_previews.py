"""Server-side previews through the HTTP app: `kubectl apply --dry-run=server` gets the real verdict
without side effects, and labelling a namespace warns about the workloads it would refuse."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from builders import MODE, PROFILE, review_document, workload
from flask.testing import FlaskClient

from webhook.admission.controller import AdmissionController
from webhook.admission.ports import EnsureResult
from webhook.cluster.static import StaticNamespaceSource, StaticWorkloadSource
from webhook.config.policy_file import FixedPolicy
from webhook.core.decision import EnsureNetworkPolicies
from webhook.core.policy import Policy
from webhook.http.app import create_app


class RecordingApplier:
    """Creates nothing, but remembers every call, as a cluster applier that succeeded."""

    def __init__(self) -> None:
        self.calls: list[EnsureNetworkPolicies] = []

    def ensure(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        self.calls.append(intent)
        return EnsureResult(created=intent.names)

    def check(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        return EnsureResult(created=intent.names)


RUNNING = {
    "payments": [
        workload("Deployment", {"app": "api"}, name="api"),
        workload("Deployment", {PROFILE: "stripe"}, name="checkout"),
    ]
}


@pytest.fixture
def applier() -> RecordingApplier:
    return RecordingApplier()


@pytest.fixture
def client(policy: Policy, applier: RecordingApplier) -> FlaskClient:
    source = FixedPolicy(policy)
    controller = AdmissionController(
        source, StaticNamespaceSource(source), applier, workloads=StaticWorkloadSource(RUNNING)
    )
    return create_app(controller).test_client()


def answer(client: FlaskClient, document: dict[str, Any]) -> dict[str, Any]:
    reply = client.post("/validate", data=orjson.dumps(document), content_type="application/json")
    assert reply.status_code == 200
    response: dict[str, Any] = reply.get_json()["response"]
    return response


@pytest.mark.parametrize(
    ("labels", "namespace", "ensures"),
    [
        pytest.param({PROFILE: "stripe"}, "payments", True, id="allowed-with-policies"),
        pytest.param({}, "payments", False, id="denied"),
        pytest.param({}, "staging", False, id="warned"),
        pytest.param({}, "sandbox", False, id="audited"),
        pytest.param({PROFILE: "none"}, "nowhere", False, id="unmanaged"),
    ],
)
def test_dry_run_gives_the_same_verdict_and_applies_nothing(
    client: FlaskClient,
    applier: RecordingApplier,
    labels: dict[str, str],
    namespace: str,
    ensures: bool,
) -> None:
    obj = workload("Deployment", labels)
    dry = answer(client, review_document(obj, namespace=namespace, dryRun=True))
    assert applier.calls == [], "a dry run has no side effects"
    real = answer(client, review_document(obj, namespace=namespace))
    assert len(applier.calls) == (1 if ensures else 0)
    for key in ("allowed", "status", "auditAnnotations"):
        assert dry.get(key) == real.get(key)
    extra = [w for w in dry.get("warnings", []) if w not in real.get("warnings", [])]
    if ensures:
        names = ", ".join(applier.calls[0].names)
        assert extra == [f"egress-guard: dry run: would ensure {names}"]
    else:
        assert dry.get("warnings") == real.get("warnings")


def namespace_review(new: dict[str, str], old: dict[str, str], *, dry_run: bool) -> dict[str, Any]:
    def namespace(labels: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "payments", "labels": labels},
        }

    document = review_document(namespace(new), namespace="payments", operation="UPDATE")
    document["request"]["oldObject"] = namespace(old)
    document["request"]["dryRun"] = dry_run
    document["request"]["resource"]["resource"] = "namespaces"
    return document


@pytest.mark.parametrize("dry_run", [True, False], ids=["kubectl-label-dry-run", "kubectl-label"])
def test_labelling_a_namespace_warns_about_the_workloads_it_would_refuse(
    client: FlaskClient, applier: RecordingApplier, dry_run: bool
) -> None:
    response = answer(client, namespace_review({MODE: "enforce"}, {}, dry_run=dry_run))
    assert response["allowed"] is True
    assert response["warnings"][0] == (
        "egress-guard: 1 existing workload in payments lacks a valid egress profile; "
        "enforce refuses them and their new pods"
    )
    assert response["warnings"][1].startswith('egress-guard: Deployment "api" has no egress')
    assert len(response["warnings"]) == 2, "checkout declares a profile"
    assert applier.calls == []


def test_relabelling_without_a_mode_change_says_nothing(client: FlaskClient) -> None:
    response = answer(
        client, namespace_review({MODE: "warn", "team": "a"}, {MODE: "warn"}, dry_run=False)
    )
    assert response == {"uid": response["uid"], "allowed": True}
