"""Fuzzing seeded with real reviews: the corpus's recorded AdmissionReviews, mutated, through the
transport; and the proxy patcher over pods with random env, envFrom and container lists.

Every answer is a well-formed AdmissionReview or a clean 4xx, never a 5xx and never an errored
review (the core must not raise); every patch applies and a second pass over its output is empty.
Sizes scale with EGRESS_GUARD_ROBUSTNESS_SCALE.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from builders import CORPUS, PROFILE, apply_patch, ns_labels, request
from flask.testing import FlaskClient
from fuzzing import check_answer, json_values, paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robustness_support import scaled

from webhook.admission.controller import AdmissionController
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import FixedPolicy, load_policy
from webhook.core.evaluate import mutate
from webhook.core.policy import Policy
from webhook.http.app import create_app

EXAMPLES = scaled(300)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def corpus_reviews() -> list[dict[str, Any]]:
    """The recorded reviews that carry a request, as the API server would send them (v1)."""
    reviews = []
    for path in sorted((CORPUS / "admission").rglob("*")):
        if path.suffix not in (".json", ".yaml", ".yml"):
            continue
        try:
            text = path.read_text(errors="replace")
            document = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (orjson.JSONDecodeError, yaml.YAMLError):
            continue
        if isinstance(document, dict) and document.get("kind") != "AdmissionReview":
            document = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": document,
            }
        request_part = document.get("request") if isinstance(document, dict) else None
        if isinstance(request_part, dict) and isinstance(request_part.get("uid"), str):
            document["apiVersion"] = "admission.k8s.io/v1"
            request_part["namespace"] = "payments"  # an enforcing namespace of the policy
            reviews.append(document)
    return reviews


SEEDS = corpus_reviews() if CORPUS.is_dir() else []
pytestmark = pytest.mark.skipif(not SEEDS, reason=f"corpus not present at {CORPUS}")


@st.composite
def mutated_corpus_reviews(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        candidates = [p for p in paths(document) if len(p) >= 2]  # keep the envelope's shape
        path = draw(st.sampled_from(candidates))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return document


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    source = FixedPolicy(load_policy(None))
    controller = AdmissionController(
        source, StaticNamespaceSource(source), ReportingNetworkPolicyApplier()
    )
    return create_app(controller).test_client()


@pytest.mark.parametrize("path", ["/validate", "/mutate"])
@FUZZ
@given(document=mutated_corpus_reviews())
def test_mutated_corpus_reviews_get_a_well_formed_answer(
    client: FlaskClient, path: str, document: Any
) -> None:
    reply = client.post(path, data=orjson.dumps(document), content_type="application/json")
    check_answer(reply, document)


env_entry = st.one_of(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["HTTP_PROXY", "http_proxy", "NO_PROXY", "A", "B"]),
            "value": st.text(max_size=10),
        }
    ),
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["HTTPS_PROXY", "C"]),
            "valueFrom": st.just({"secretKeyRef": {"name": "s", "key": "k"}}),
        }
    ),
)
containers = st.lists(
    st.builds(
        lambda name, env, env_from: {
            "name": name,
            "image": "x",
            **({"env": env} if env is not None else {}),
            **({"envFrom": [{"configMapRef": {"name": "cm"}}]} if env_from else {}),
        },
        st.text(alphabet="abcdefgh-/~", min_size=1, max_size=8),
        st.one_of(st.none(), st.lists(env_entry, max_size=4)),
        st.booleans(),
    ),
    max_size=3,
)


@FUZZ
@given(
    main=containers.filter(bool),
    init=st.one_of(st.none(), containers),
    annotations=st.one_of(st.none(), st.dictionaries(st.text(max_size=6), st.text(max_size=6))),
)
def test_the_patcher_applies_and_a_second_pass_is_empty(
    main: list[dict[str, Any]],
    init: list[dict[str, Any]] | None,
    annotations: dict[str, str] | None,
) -> None:
    policy: Policy = load_policy(None)
    metadata: dict[str, Any] = {"name": "p", "labels": {PROFILE: "none"}}
    if annotations is not None:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {"containers": main}
    if init is not None:
        spec["initContainers"] = init
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    before = copy.deepcopy(pod)
    first = mutate(request(pod), ns_labels("enforce", "proxy"), policy)
    assert pod == before  # the core never touches the object it was given
    patched = apply_patch(pod, first.patch)
    for index, original in enumerate(main):
        kept = patched["spec"]["containers"][index]
        assert kept.get("envFrom") == original.get("envFrom")
        assert (kept.get("env") or [])[: len(original.get("env") or [])] == (
            original.get("env") or []
        )
    assert mutate(request(patched), ns_labels("enforce", "proxy"), policy).patch == ()


def test_the_seeds_are_real(tmp_path: Path) -> None:
    assert len(SEEDS) >= 200, len(SEEDS)
    print(f"\nfuzz seeds: {len(SEEDS)} corpus reviews; {EXAMPLES} examples per fuzz test")
