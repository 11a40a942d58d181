"""Proxy injection: what is added, what is never replaced or dropped, and idempotence."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from builders import (
    PROFILE,
    apply_patch,
    container,
    ns_labels,
    pod,
    pod_spec,
    policy_with,
    request,
    workload,
)

from webhook.core.evaluate import mutate
from webhook.core.policy import Policy

URL = "http://egress-proxy.egress-system.svc.cluster.local:3128"
NO_PROXY = "localhost,127.0.0.1,.svc,.cluster.local,10.96.0.0/12"
PROXY_VARS = {
    "HTTP_PROXY": URL,
    "HTTPS_PROXY": URL,
    "NO_PROXY": NO_PROXY,
    "http_proxy": URL,
    "https_proxy": URL,
    "no_proxy": NO_PROXY,
}


RECORDED = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"]
"""The variables in the injection record, each upper-case one beside its twin."""


def env_of(obj: dict[str, Any], list_name: str = "containers", index: int = 0) -> dict[str, Any]:
    entries = obj["spec"][list_name][index].get("env") or []
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in entries}


def mutated(obj: dict[str, Any], policy: Policy, labels: dict[str, str] | None = None) -> Any:
    decision = mutate(request(obj), labels or ns_labels("enforce", "proxy"), policy)
    assert decision.allowed
    return decision, apply_patch(obj, decision.patch)


def test_injects_all_six_variables_into_a_container_without_env(policy: Policy) -> None:
    obj = pod({PROFILE: "none"})
    decision, result = mutated(obj, policy)
    assert env_of(result) == PROXY_VARS
    # A missing env is created in one operation, not one per variable.
    assert [op["path"] for op in decision.patch if "/env" in op["path"]] == [
        "/spec/containers/0/env"
    ]


def test_appends_after_existing_env_and_keeps_every_entry(policy: Policy) -> None:
    existing = [
        {"name": "A", "value": "1"},
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "REF", "value": "$(A)-x"},
    ]
    obj = pod(
        {PROFILE: "none"},
        pod_spec(container(env=existing, envFrom=[{"configMapRef": {"name": "cm"}}])),
    )
    decision, result = mutated(obj, policy)
    env = result["spec"]["containers"][0]["env"]
    assert env[:3] == existing
    assert {e["name"] for e in env[3:]} == set(PROXY_VARS)
    assert result["spec"]["containers"][0]["envFrom"] == [{"configMapRef": {"name": "cm"}}]
    assert all(op["path"].endswith("/env/-") for op in decision.patch if "/env" in op["path"])


@pytest.mark.parametrize(
    ("present", "value"),
    [
        pytest.param("HTTP_PROXY", "127.0.0.1:15002", id="upper-set"),
        pytest.param("http_proxy", "http://other:8080", id="lower-set"),
        pytest.param("HTTP_PROXY", None, id="upper-from-secret"),
    ],
)
def test_never_replaces_a_value_the_workload_sets(
    present: str, value: str | None, policy: Policy
) -> None:
    entry: dict[str, Any] = {"name": present}
    if value is None:
        entry["valueFrom"] = {"secretKeyRef": {"name": "proxy", "key": "url"}}
    else:
        entry["value"] = value
    obj = pod({PROFILE: "none"}, pod_spec(container(env=[entry])))
    decision, result = mutated(obj, policy)
    env = result["spec"]["containers"][0]["env"]
    assert env[0] == entry
    names = [e["name"] for e in env]
    # The pair is left alone as a unit; the other pairs are still injected.
    assert "HTTP_PROXY" not in names[1:] and "http_proxy" not in names[1:]
    assert {"HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"} <= set(names)
    assert any(present in w and "left unchanged" in w for w in decision.warnings)


def test_same_value_already_set_is_not_a_conflict_and_gets_its_twin(policy: Policy) -> None:
    obj = pod({PROFILE: "none"}, pod_spec(container(env=[{"name": "HTTPS_PROXY", "value": URL}])))
    decision, result = mutated(obj, policy)
    assert not decision.warnings
    assert env_of(result) == PROXY_VARS


def test_init_containers_and_native_sidecars_get_variables(policy: Policy) -> None:
    spec = pod_spec(
        container("app"),
        initContainers=[container("migrate"), container("mesh", restartPolicy="Always")],
    )
    _, result = mutated(pod({PROFILE: "none"}, spec), policy)
    assert env_of(result) == PROXY_VARS
    assert env_of(result, "initContainers", 0) == PROXY_VARS
    assert env_of(result, "initContainers", 1) == PROXY_VARS


def test_records_what_was_injected_in_an_annotation(policy: Policy) -> None:
    spec = pod_spec(container("app", env=[{"name": "NO_PROXY", "value": "x"}]), container("side"))
    _, result = mutated(pod({PROFILE: "none"}, spec, annotations={"keep": "me"}), policy)
    annotations = result["metadata"]["annotations"]
    assert annotations["keep"] == "me"
    record = json.loads(annotations["egress-guard.io/proxy-injected"])
    assert record["url"] == URL
    assert record["containers"]["app"] == ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"]
    assert len(record["containers"]["side"]) == 6


def test_annotation_key_is_escaped_in_the_patch_path(policy: Policy) -> None:
    decision, _ = mutated(pod({PROFILE: "none"}, annotations={}), policy)
    assert "/metadata/annotations/egress-guard.io~1proxy-injected" in [
        op["path"] for op in decision.patch
    ]


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(pod({PROFILE: "none"}), id="plain"),
        pytest.param(
            pod({PROFILE: "none"}, pod_spec(container(env=[{"name": "http_proxy", "value": "x"}]))),
            id="conflict",
        ),
        pytest.param(
            pod(None, pod_spec(container("a", env=None), initContainers=[container("i", env=[])])),
            id="null-env-and-empty-env",
        ),
    ],
)
def test_a_second_pass_over_the_output_yields_no_patch(obj: dict[str, Any], policy: Policy) -> None:
    first, once = mutated(obj, policy)
    assert first.patch
    second = mutate(request(once), ns_labels("enforce", "proxy"), policy)
    assert second.patch == ()


def test_values_with_expansion_syntax_are_escaped(policy: Policy) -> None:
    proxy = {**policy.model_dump(by_alias=True)["proxy"], "noProxy": ["$(HOST)", ".svc"]}
    odd = policy_with(policy, proxy=proxy)
    _, result = mutated(pod({PROFILE: "none"}), odd)
    assert env_of(result)["NO_PROXY"] == "$$(HOST),.svc"
    assert mutate(request(result), ns_labels("enforce", "proxy"), odd).patch == ()


@pytest.mark.parametrize(
    ("labels", "profile", "expected"),
    [
        pytest.param(ns_labels("enforce", "proxy"), "none", True, id="inject-proxy"),
        pytest.param(ns_labels("enforce", "all"), "none", False, id="inject-all-no-route"),
        pytest.param(ns_labels("enforce", "all"), "stripe", True, id="inject-all-host-names"),
        pytest.param(ns_labels("enforce", "all"), "web-via-proxy", True, id="inject-all-proxy"),
        pytest.param(ns_labels("enforce", "all"), "internal", False, id="inject-all-in-cluster"),
        pytest.param(ns_labels("enforce"), "none", False, id="networkpolicy-only"),
        pytest.param(ns_labels("enforce"), "web-via-proxy", True, id="proxy-profile"),
        pytest.param(ns_labels("enforce", "none"), "web-via-proxy", False, id="inject-none"),
        pytest.param(ns_labels("warn"), "web-via-proxy", False, id="warn-default-none"),
        pytest.param(None, "none", False, id="not-managed"),
    ],
)
def test_injection_follows_namespace_and_profile(
    labels: dict[str, str] | None, profile: str, expected: bool, policy: Policy
) -> None:
    decision = mutate(request(pod({PROFILE: profile})), labels, policy)
    assert bool(decision.patch) is expected


@pytest.mark.parametrize(
    "req",
    [
        pytest.param(request(workload("Deployment", {PROFILE: "none"})), id="deployment"),
        pytest.param(request(pod({PROFILE: "none"}), operation="UPDATE"), id="pod-update"),
        pytest.param(request(pod({PROFILE: "none"}), namespace="kube-system"), id="exempt"),
        pytest.param(
            request(pod({PROFILE: "none"}), sub_resource="status", operation="UPDATE"), id="status"
        ),
    ],
)
def test_only_pods_on_creation_are_mutated(req: Any, policy: Policy) -> None:
    assert mutate(req, ns_labels("enforce", "proxy"), policy).patch == ()


def test_new_ephemeral_containers_get_variables_existing_ones_stay(policy: Policy) -> None:
    old = pod({PROFILE: "none"}, pod_spec(ephemeralContainers=[container("debug-1")]))
    new = pod(
        {PROFILE: "none"},
        pod_spec(ephemeralContainers=[container("debug-1"), container("debug-2")]),
    )
    req = request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    decision = mutate(req, ns_labels("enforce", "proxy"), policy)
    result = apply_patch(new, decision.patch)
    assert "env" not in result["spec"]["ephemeralContainers"][0]
    assert env_of(result, "ephemeralContainers", 1) == PROXY_VARS
    assert "annotations" not in result["metadata"]  # the subresource may change nothing else


def test_no_proxy_section_means_a_warning_not_a_crash(policy: Policy) -> None:
    bare = policy_with(policy, proxy=None, profiles={"none": {}})
    decision = mutate(request(pod({PROFILE: "none"})), ns_labels("enforce", "proxy"), bare)
    assert decision.allowed
    assert decision.patch == ()
    assert any("no proxy" in w for w in decision.warnings)


def test_malformed_env_is_skipped_with_a_warning(policy: Policy) -> None:
    obj = pod({PROFILE: "none"}, pod_spec(container(env={"HTTP_PROXY": "x"})))
    decision = mutate(request(obj), ns_labels("enforce", "proxy"), policy)
    assert decision.patch == ()
    assert any("malformed env" in w for w in decision.warnings)


def test_pod_without_metadata_labels_or_annotations_is_patched_in_place(policy: Policy) -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "job-"},
        "spec": pod_spec(),
    }
    decision = mutate(request(obj), ns_labels("enforce", "proxy"), policy)
    result = apply_patch(obj, decision.patch)
    assert result["metadata"]["generateName"] == "job-"
    assert "egress-guard.io/proxy-injected" in result["metadata"]["annotations"]


def test_a_second_invocation_adds_new_containers_to_the_record(policy: Policy) -> None:
    """The API server may call the webhook again after another one added a sidecar."""
    _, first = mutated(pod({PROFILE: "none"}, pod_spec(container("app"))), policy)
    first["spec"]["containers"].append(container("sidecar"))
    _, second = mutated(first, policy)
    record = json.loads(second["metadata"]["annotations"]["egress-guard.io/proxy-injected"])
    assert set(record["containers"]) == {"app", "sidecar"}
    assert env_of(second, index=1) == PROXY_VARS


def test_a_malformed_env_skips_only_its_own_container(policy: Policy) -> None:
    obj = pod(
        {PROFILE: "none"},
        pod_spec(container("broken", env="not-a-list"), container("app"), container("sidecar")),
    )
    decision, result = mutated(obj, policy)
    assert "env" not in result["spec"]["containers"][0] or result["spec"]["containers"][0][
        "env"
    ] == ("not-a-list")
    assert env_of(result, index=1) == PROXY_VARS
    assert env_of(result, index=2) == PROXY_VARS
    assert next(w for w in decision.warnings if "malformed env" in w).count('"broken"') == 1


def test_a_conflict_warning_names_the_container_and_both_variables(policy: Policy) -> None:
    own = [{"name": "HTTP_PROXY", "value": "http://own:1"}, {"name": "http_proxy", "value": "x"}]
    obj = pod({PROFILE: "none"}, pod_spec(container("app"), container("sidecar", env=own)))
    decision, result = mutated(obj, policy)
    (warning,) = [w for w in decision.warnings if "sets its own" in w]
    assert '"sidecar"' in warning
    assert "HTTP_PROXY/http_proxy" in warning
    assert env_of(result, index=1)["HTTP_PROXY"] == "http://own:1"
    assert env_of(result, index=1)["HTTPS_PROXY"] == URL


def test_an_unnamed_container_is_named_by_its_place(policy: Policy) -> None:
    unnamed = {"image": "app:1", "env": [{"name": "NO_PROXY", "value": "own"}]}
    obj = pod({PROFILE: "none"}, pod_spec(container("app"), unnamed))
    decision, result = mutated(obj, policy)
    assert any("containers[1]" in w and "NO_PROXY" in w for w in decision.warnings)
    record = json.loads(result["metadata"]["annotations"]["egress-guard.io/proxy-injected"])
    assert set(record["containers"]) == {"app", "containers[1]"}


def test_a_variable_taken_from_elsewhere_is_the_workloads_own(policy: Policy) -> None:
    """Same value, but from a reference too: not egress-guard's entry, so never completed."""
    entry = {"name": "HTTPS_PROXY", "value": URL, "valueFrom": {"configMapKeyRef": {"name": "p"}}}
    obj = pod({PROFILE: "none"}, pod_spec(container("app", env=[entry])))
    decision, result = mutated(obj, policy)
    assert any("HTTPS_PROXY" in w and "sets its own" in w for w in decision.warnings)
    assert "https_proxy" not in env_of(result)
    assert env_of(result)["HTTP_PROXY"] == URL


def test_a_pod_without_a_spec_is_left_alone(policy: Policy) -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"}}
    decision = mutate(request(obj), ns_labels("enforce", "proxy"), policy)
    assert decision.allowed
    assert len(decision.patch) == 0
    assert len(decision.warnings) == 0


def test_a_pod_without_metadata_gets_the_record_in_new_metadata(policy: Policy) -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "spec": pod_spec()}
    crafted = replace(request(pod()), object=obj)
    decision = mutate(crafted, ns_labels("enforce", "proxy"), policy)
    result = apply_patch(obj, decision.patch)
    record = json.loads(result["metadata"]["annotations"]["egress-guard.io/proxy-injected"])
    assert record == {"containers": {"app": RECORDED}, "url": URL}


def test_the_record_is_compact_json_with_sorted_keys(policy: Policy) -> None:
    """A stable text: the same injection always records the same annotation value."""
    _, result = mutated(pod({PROFILE: "none"}, pod_spec(container("b"), container("a"))), policy)
    text = result["metadata"]["annotations"]["egress-guard.io/proxy-injected"]
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize(
    "earlier",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("[1, 2]", id="a-list"),
        pytest.param('{"containers": [1]}', id="containers-not-a-map"),
        pytest.param('{"containers": {"x": "HTTP_PROXY"}}', id="names-not-a-list"),
    ],
)
def test_an_unreadable_earlier_record_is_replaced(earlier: str, policy: Policy) -> None:
    obj = pod({PROFILE: "none"}, annotations={"egress-guard.io/proxy-injected": earlier})
    _, result = mutated(obj, policy)
    record = json.loads(result["metadata"]["annotations"]["egress-guard.io/proxy-injected"])
    assert record["containers"] == {"app": RECORDED}


def test_an_earlier_record_is_kept_as_it_was(policy: Policy) -> None:
    earlier = json.dumps({"url": URL, "containers": {"init": ["HTTP_PROXY", "http_proxy"]}})
    obj = pod({PROFILE: "none"}, annotations={"egress-guard.io/proxy-injected": earlier})
    _, result = mutated(obj, policy)
    record = json.loads(result["metadata"]["annotations"]["egress-guard.io/proxy-injected"])
    assert record["containers"]["init"] == ["HTTP_PROXY", "http_proxy"]
    assert record["containers"]["app"] == RECORDED
