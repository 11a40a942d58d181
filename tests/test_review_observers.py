"""What watches answered reviews (the decision log, metrics, denial Events) cannot fail a review:
the verdict is decided before they run, so a failing observer is logged and counted instead."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from builders import PROFILE, review_document, workload

from webhook.admission.controller import AdmissionController, ReviewResult
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import PolicyStore
from webhook.core.evaluate import Action
from webhook.core.request import AdmissionRequest
from webhook.http.app import create_app
from webhook.http.metrics import WebhookMetrics


class BrokenMetrics(WebhookMetrics):
    def observe(
        self, request: AdmissionRequest, action: Action, outcome: ReviewResult, latency_s: float
    ) -> None:
        raise RuntimeError("a metrics bug")


def broken_observer(request: AdmissionRequest, action: Action, outcome: ReviewResult) -> None:
    raise RuntimeError("an observer bug")


def answer(metrics: WebhookMetrics, on_review: Any, document: Any) -> tuple[int, Any]:
    policies = PolicyStore(None)  # payments: enforce
    controller = AdmissionController(
        policies, StaticNamespaceSource(policies), ReportingNetworkPolicyApplier()
    )
    app = create_app(controller, metrics=metrics, on_review=on_review)
    reply = app.test_client().post(
        "/validate", data=orjson.dumps(document), content_type="application/json"
    )
    return reply.status_code, reply.get_json()


@pytest.mark.parametrize(
    ("metrics_class", "on_review", "observer"),
    [
        pytest.param(BrokenMetrics, None, "metrics", id="metrics"),
        pytest.param(WebhookMetrics, broken_observer, "on_review", id="denial-events"),
    ],
)
@pytest.mark.parametrize(
    ("labels", "allowed"),
    [pytest.param({PROFILE: "stripe"}, True, id="allowed"), pytest.param({}, False, id="denied")],
)
def test_a_failing_observer_leaves_the_answer_as_decided(
    metrics_class: type[WebhookMetrics],
    on_review: Any,
    observer: str,
    labels: dict[str, str],
    allowed: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    metrics = metrics_class()
    status, body = answer(metrics, on_review, review_document(workload("Deployment", labels)))
    assert status == 200
    assert body["response"]["allowed"] is allowed
    assert f"the {observer} observer failed" in caplog.text
    text = metrics.exposition().decode()
    assert f'egress_guard_observer_failures_total{{observer="{observer}"}} 1.0' in text
    assert 'egress_guard_errors_total{reason="internal"} 0.0' in text
