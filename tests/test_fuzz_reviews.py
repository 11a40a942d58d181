"""Fuzzing the transport: random and mutated reviews never produce a 5xx or a malformed answer.

Every answer is either a clean 4xx with a JSON error, or HTTP 200 with a well-formed
AdmissionReview echoing the request's uid. Examples scale with EGRESS_GUARD_FUZZ_EXAMPLES.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import orjson
import pytest
from builders import PROFILE, container, pod, pod_spec, review_document, workload
from flask.testing import FlaskClient
from fuzzing import check_answer, json_values, paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.admission.controller import AdmissionController
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import FixedPolicy
from webhook.core.policy import Policy
from webhook.http.app import create_app

EXAMPLES = int(os.environ.get("EGRESS_GUARD_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def client(policy: Policy) -> FlaskClient:
    source = FixedPolicy(policy)
    controller = AdmissionController(
        source, StaticNamespaceSource(source), ReportingNetworkPolicyApplier()
    )
    return create_app(controller, max_body_bytes=256 * 1024).test_client()


SEEDS = [
    review_document(workload("Deployment")),
    review_document(workload("CronJob", {PROFILE: "stripe"})),
    review_document(
        pod({PROFILE: "none"}, pod_spec(container(env=[{"name": "A", "value": "1"}]))),
        namespace="shop",
    ),
    review_document(workload("StatefulSet"), namespace="staging"),
    review_document(workload("DaemonSet"), operation="UPDATE", oldObject=workload("DaemonSet")),
]


def replaced(document: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    if not path:
        return new
    copied = copy.deepcopy(document)
    parent = copied
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return copied


@st.composite
def mutated_reviews(draw: st.DrawFn) -> Any:
    """A valid review with one to three nodes replaced by random JSON or deleted."""
    document: Any = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        candidates = list(paths(document))
        path = draw(st.sampled_from(candidates))
        document = replaced(
            document, path, draw(json_values), delete=bool(path) and draw(st.booleans())
        )
    return document


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
@FUZZ
@given(document=mutated_reviews())
def test_mutated_reviews_get_a_well_formed_answer(
    client: FlaskClient, path: str, document: Any
) -> None:
    reply = client.post(path, data=orjson.dumps(document), content_type="application/json")
    check_answer(reply, document)


@FUZZ
@given(document=json_values)
def test_random_json_is_a_clean_4xx_or_an_answer(client: FlaskClient, document: Any) -> None:
    reply = client.post("/validate", data=orjson.dumps(document), content_type="application/json")
    check_answer(reply, document)


@FUZZ
@given(body=st.binary(max_size=512))
def test_random_bytes_are_a_clean_4xx(client: FlaskClient, body: bytes) -> None:
    reply = client.post("/mutate", data=body, content_type="application/json")
    assert 400 <= reply.status_code < 500
    assert orjson.loads(reply.get_data())["error"]
