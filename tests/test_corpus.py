"""Real-world material: ../shared/corpus (public manifests and AdmissionReviews), when present.

- every workload is denied as a CREATE in an enforce namespace without the profile label, and
  allowed once the label is on its pod template;
- every recorded review under admission/ gets a well-formed answer (or, when it is no review the
  API server would send, a clean 4xx);
- every pod the proxy injection mutates still validates against the Kubernetes schema when the
  original did.
"""

from __future__ import annotations

import base64
import copy
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import orjson
import pytest
import yaml
from builders import CORPUS, PROFILE, apply_patch, ns_labels, policy_with, request
from flask.testing import FlaskClient

from webhook.admission.controller import AdmissionController
from webhook.cli.input_files import InputObject, find_files, read_inputs
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import FixedPolicy
from webhook.core.evaluate import mutate, validate
from webhook.core.policy import Policy
from webhook.core.workloads import find_workload
from webhook.http.app import create_app

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not present at {CORPUS}"),
]

SCHEMA_VERSION = "1.33"
MIN_WORKLOADS = 500
"""The corpus README counts far more; fewer means the reader lost some (a regression)."""


def corpus_manifests() -> list[InputObject]:
    files, _ = find_files([str(CORPUS / "workloads")])
    return read_inputs(files).manifests


def workloads() -> Iterator[InputObject]:
    for manifest in corpus_manifests():
        name = str(manifest.metadata.get("name") or manifest.metadata.get("generateName") or "x")
        if find_workload(manifest.obj, manifest.kind, name) is not None:
            yield manifest


@pytest.fixture(scope="module")
def corpus_workloads() -> list[InputObject]:
    found = list(workloads())
    assert len(found) >= MIN_WORKLOADS, f"only {len(found)} workloads read from the corpus"
    return found


def template_path(obj: dict[str, Any], kind: str) -> tuple[str, ...]:
    """Where the core reads this workload's pod template."""
    found = find_workload(obj, kind, "x")
    assert found is not None, kind
    return found.template_path


def with_profile(obj: dict[str, Any], kind: str, profile: str) -> dict[str, Any]:
    """The object with the profile label on its pods (the template, or a Pod's own labels)."""
    labelled = copy.deepcopy(obj)
    target = labelled
    for key in template_path(obj, kind):
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    if not isinstance(target.get("metadata"), dict):
        target["metadata"] = {}
    if not isinstance(target["metadata"].get("labels"), dict):
        target["metadata"]["labels"] = {}
    target["metadata"]["labels"][PROFILE] = profile
    return labelled


def without_profile(obj: dict[str, Any]) -> dict[str, Any]:
    """The object with no profile label anywhere (none of the corpus has one, but be sure)."""
    text = orjson.dumps(obj).replace(PROFILE.encode(), b"unrelated.example/key")
    return orjson.loads(text)  # type: ignore[no-any-return]


def test_every_workload_is_denied_without_the_label_and_allowed_with_it(
    corpus_workloads: list[InputObject], policy: Policy
) -> None:
    kinds: Counter[str] = Counter()
    profiles = policy.model_dump(by_alias=True)["profiles"]
    node_agent = {"hostNetwork": True, "secondaryNetworks": True, "namespaces": ["demo"]}
    agents = policy_with(policy, profiles={**profiles, "node-agent": node_agent})
    for manifest in corpus_workloads:
        kinds[manifest.kind] += 1
        bare = without_profile(manifest.obj)
        denied = validate(request(bare, namespace="demo"), ns_labels("enforce"), policy)
        assert not denied.allowed, f"{manifest.source}: {manifest.kind} allowed without a label"
        assert denied.code == 403 and PROFILE in denied.message, manifest.source
        labelled = with_profile(bare, manifest.kind, "internal")
        admitted = validate(request(labelled, namespace="demo"), ns_labels("enforce"), policy)
        escapes = {f.check for f in admitted.violations}
        if escapes:
            # Pods on the node's network or on Multus networks, which no NetworkPolicy
            # restricts, need a profile that says so.
            kinds["escaping NetworkPolicies"] += 1
            assert escapes <= {"host-network", "secondary-networks"}, manifest.source
            agent = with_profile(bare, manifest.kind, "node-agent")
            admitted = validate(request(agent, namespace="demo"), ns_labels("enforce"), agents)
        assert admitted.allowed, f"{manifest.source}: {admitted.message}"
    assert kinds["escaping NetworkPolicies"] > 0, "the corpus has node agents (CNI DaemonSets)"
    assert {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"} <= set(kinds)
    assert {"ReplicationController", "ReplicaSet"} <= set(kinds)


def pods_of(manifest: InputObject) -> Iterator[dict[str, Any]]:
    """The Pod itself, or a Pod made from the workload's template, as the controller would."""
    if manifest.kind == "Pod":
        yield manifest.obj
        return
    template: Any = manifest.obj
    for key in template_path(manifest.obj, manifest.kind):
        template = template.get(key) if isinstance(template, dict) else None
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        metadata = copy.deepcopy(template.get("metadata") or {})
        metadata.setdefault("name", f"{manifest.metadata.get('name', 'pod')}-abcde")
        yield {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def schema_valid(obj: dict[str, Any]) -> bool:
    try:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    except (kubernetes_validate.ValidationError, kubernetes_validate.utils.SchemaNotFoundError):
        return False
    return True


def test_every_mutated_pod_still_validates_against_the_schema(
    corpus_workloads: list[InputObject], policy: Policy
) -> None:
    mutated = 0
    for manifest in corpus_workloads:
        for pod in pods_of(manifest):
            decision = mutate(request(pod, namespace="demo"), ns_labels("enforce", "proxy"), policy)
            if not decision.patch:
                continue
            patched = apply_patch(pod, decision.patch)
            second = mutate(
                request(patched, namespace="demo"), ns_labels("enforce", "proxy"), policy
            )
            assert second.patch == (), f"{manifest.source}: second pass patched again"
            if schema_valid(pod):
                mutated += 1
                kubernetes_validate.validate(patched, SCHEMA_VERSION, strict=True)
    assert mutated >= 300, f"only {mutated} schema-valid pods were mutated"


def recorded_reviews() -> Iterator[tuple[Path, Any]]:
    for path in sorted((CORPUS / "admission").rglob("*")):
        if path.suffix not in (".json", ".yaml", ".yml") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        try:
            document = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (orjson.JSONDecodeError, yaml.YAMLError):
            continue
        yield path, document


@pytest.fixture(scope="module")
def client(policy: Policy) -> FlaskClient:
    source = FixedPolicy(policy)
    controller = AdmissionController(
        source, StaticNamespaceSource(source), ReportingNetworkPolicyApplier()
    )
    return create_app(controller).test_client()


def as_review(document: Any) -> Any:
    """Recorded fixtures hold full reviews or bare requests; the API server sends reviews."""
    if isinstance(document, dict) and document.get("kind") == "AdmissionReview":
        return document
    if isinstance(document, dict) and ("operation" in document or "object" in document):
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": document}
    return document


def test_every_recorded_review_gets_a_well_formed_answer(client: FlaskClient) -> None:
    outcomes: Counter[str] = Counter()
    for path, document in recorded_reviews():
        review = as_review(document)
        request_part = review.get("request") if isinstance(review, dict) else None
        if request_part is None:  # a recorded response, or a patch: no request to answer
            outcomes["not a request"] += 1
            continue
        for action in ("/validate", "/mutate"):
            reply = client.post(action, data=orjson.dumps(review), content_type="application/json")
            assert reply.status_code in (200, 400), f"{path}: {reply.status_code}"
            body = orjson.loads(reply.get_data())
            if reply.status_code == 400:
                uid = request_part.get("uid") if isinstance(request_part, dict) else None
                assert not uid or review.get("apiVersion") not in (
                    "admission.k8s.io/v1",
                    "admission.k8s.io/v1beta1",
                ), f"{path}: a review with a uid was refused: {body}"
                outcomes["refused (no uid)"] += 1
                continue
            response = body["response"]
            assert response["uid"] == request_part["uid"], path
            assert body["apiVersion"] == review["apiVersion"], path
            assert isinstance(response["allowed"], bool), path
            if "patch" in response:
                assert response["patchType"] == "JSONPatch"
                orjson.loads(base64.b64decode(response["patch"]))
            outcomes["answered"] += 1
    assert outcomes["answered"] >= 300, outcomes
