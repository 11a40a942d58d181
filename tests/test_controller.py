"""The admission controller's failure modes: validation fails closed, mutation fails open."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from builders import PROFILE, pod, request, workload

from webhook.admission.controller import AdmissionController
from webhook.admission.ports import NamespaceUnavailable
from webhook.cluster.static import ReportingNetworkPolicyApplier
from webhook.config.policy_file import FixedPolicy
from webhook.core.evaluate import Action
from webhook.core.policy import Policy


class FailingNamespaces:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def labels(self, namespace: str) -> Mapping[str, str] | None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(NamespaceUnavailable("the API server is not answering"), id="unavailable"),
        pytest.param(RuntimeError("unexpected"), id="internal-error"),
    ],
)
def test_a_mutation_that_cannot_be_made_is_allowed_with_a_warning(
    error: Exception, policy: Policy
) -> None:
    controller = AdmissionController(
        FixedPolicy(policy), FailingNamespaces(error), ReportingNetworkPolicyApplier()
    )
    outcome = controller.review(request(pod({PROFILE: "none"})), Action.MUTATE)
    assert outcome.decision.allowed
    assert outcome.decision.patch == ()
    assert any("proxy variables not injected" in w for w in outcome.decision.warnings)
    assert all(len(w) <= 120 for w in outcome.decision.warnings)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(
            NamespaceUnavailable("the API server is not answering"), 503, id="unavailable"
        ),
        pytest.param(RuntimeError("unexpected"), 500, id="internal-error"),
    ],
)
def test_a_validation_that_cannot_be_decided_is_refused(
    error: Exception, code: int, policy: Policy
) -> None:
    controller = AdmissionController(
        FixedPolicy(policy), FailingNamespaces(error), ReportingNetworkPolicyApplier()
    )
    outcome = controller.review(request(workload("Deployment", {PROFILE: "none"})), Action.VALIDATE)
    assert not outcome.decision.allowed
    assert outcome.decision.code == code
    assert "unexpected" not in outcome.decision.message  # no internals on the wire
