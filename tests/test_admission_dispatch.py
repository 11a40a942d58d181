"""The admission dispatch double keeps kube-apiserver's matching semantics (see
admission_dispatch.py and ../shared/notes/kube-apiserver-behaviour.md): tested on its own, with a
recording webhook, so the end-to-end tests of egress-guard's rules rest on known behaviour."""

from __future__ import annotations

from typing import Any

import pytest
from admission_dispatch import (
    NAMESPACES,
    NETWORK_POLICIES,
    PODS,
    AdmissionDispatch,
    Caller,
    Outcome,
)


class Recorder:
    """A webhook that allows everything and remembers what it was sent."""

    def __init__(self, allowed: bool = True, reachable: bool = True) -> None:
        self.reviews: list[dict[str, Any]] = []
        self.allowed = allowed
        self.reachable = reachable

    def __call__(self, path: str, document: dict[str, Any]) -> tuple[int, Any]:
        if not self.reachable:
            raise ConnectionRefusedError("connection refused")
        self.reviews.append(document["request"])
        uid = document["request"]["uid"]
        response: dict[str, Any] = {"uid": uid, "allowed": self.allowed}
        if not self.allowed:
            response["status"] = {"code": 403, "message": "no"}
        return 200, {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        }


def hook(name: str, rules: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": {"service": {"name": "w", "namespace": "w", "path": "/validate"}},
        "rules": rules,
        "failurePolicy": "Fail",
        **extra,
    }


def config(*hooks: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "ValidatingWebhookConfiguration", "webhooks": list(hooks)}


NAMESPACE_RULE = {
    "apiGroups": [""],
    "apiVersions": ["v1"],
    "operations": ["CREATE", "UPDATE"],
    "resources": ["namespaces"],
    "scope": "Cluster",
}
MODE_EXISTS = {"matchExpressions": [{"key": "mode", "operator": "Exists"}]}


def namespace(labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": labels}}


ADMIN = Caller("admin", ("system:masters", "system:authenticated"))


def send_namespace_update(
    webhook: dict[str, Any], old: dict[str, str], new: dict[str, str]
) -> tuple[Outcome, Recorder]:
    recorder = Recorder()
    dispatch = AdmissionDispatch([config(webhook)], {}, recorder)
    outcome = dispatch.request(
        ADMIN, "UPDATE", NAMESPACES, namespace(new), old=namespace(old), namespace=""
    )
    return outcome, recorder


class TestNamespaceObjects:
    def test_a_namespace_selector_sees_a_namespace_by_its_new_labels(self) -> None:
        by_namespace = hook("ns", [NAMESPACE_RULE], namespaceSelector=MODE_EXISTS)
        removed, _ = send_namespace_update(by_namespace, {"mode": "enforce"}, {})
        assert removed.called == [], "removing the label is not seen (as on a real server)"
        lowered, recorder = send_namespace_update(
            by_namespace, {"mode": "enforce"}, {"mode": "warn"}
        )
        assert lowered.called == ["ns"]
        assert recorder.reviews[0]["oldObject"]["metadata"]["labels"] == {"mode": "enforce"}

    def test_an_object_selector_matches_the_old_or_the_new_labels(self) -> None:
        by_object = hook("ns", [NAMESPACE_RULE], objectSelector=MODE_EXISTS)
        assert send_namespace_update(by_object, {"mode": "enforce"}, {})[0].called == ["ns"]
        assert send_namespace_update(by_object, {}, {"mode": "warn"})[0].called == ["ns"]
        assert send_namespace_update(by_object, {}, {"team": "a"})[0].called == []

    def test_an_absent_object_never_matches_an_object_selector(self) -> None:
        by_object = hook(
            "ns",
            [{**NAMESPACE_RULE, "operations": ["CREATE"]}],
            objectSelector={"matchExpressions": [{"key": "mode", "operator": "DoesNotExist"}]},
        )
        recorder = Recorder()
        dispatch = AdmissionDispatch([config(by_object)], {}, recorder)
        created = dispatch.request(ADMIN, "CREATE", NAMESPACES, namespace({"mode": "x"}))
        assert created.called == [], "the missing old object does not match DoesNotExist"


class TestRules:
    def test_a_rule_for_pods_does_not_match_pods_status(self) -> None:
        pods_only = hook(
            "pods",
            [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["UPDATE"],
                    "resources": ["pods"],
                }
            ],
        )
        dispatch = AdmissionDispatch([config(pods_only)], {"a": {}}, Recorder())
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
        assert dispatch.request(ADMIN, "UPDATE", PODS, pod, old=pod, namespace="a").called == [
            "pods"
        ]
        status = dispatch.request(
            ADMIN, "UPDATE", PODS, pod, old=pod, namespace="a", subresource="status"
        )
        assert status.called == []

    def test_the_namespace_selector_reads_the_requests_namespace(self) -> None:
        selected = hook(
            "np",
            [
                {
                    "apiGroups": ["networking.k8s.io"],
                    "apiVersions": ["v1"],
                    "operations": ["*"],
                    "resources": ["networkpolicies"],
                }
            ],
            namespaceSelector=MODE_EXISTS,
        )
        dispatch = AdmissionDispatch(
            [config(selected)], {"on": {"mode": "enforce"}, "off": {}}, Recorder()
        )
        policy = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "n"},
        }
        assert dispatch.request(
            ADMIN, "DELETE", NETWORK_POLICIES, None, old=policy, namespace="on"
        ).called
        assert not dispatch.request(
            ADMIN, "DELETE", NETWORK_POLICIES, None, old=policy, namespace="off"
        ).called


class TestCallers:
    def test_a_service_account_is_named_as_the_api_server_names_it(self) -> None:
        recorder = Recorder()
        dispatch = AdmissionDispatch([config(hook("ns", [NAMESPACE_RULE]))], {}, recorder)
        caller = Caller.service_account("egress-guard", "egress-guard")
        dispatch.request(caller, "CREATE", NAMESPACES, namespace({}))
        assert recorder.reviews[0]["userInfo"] == {
            "username": "system:serviceaccount:egress-guard:egress-guard",
            "groups": [
                "system:serviceaccounts",
                "system:serviceaccounts:egress-guard",
                "system:authenticated",
            ],
        }

    def test_match_conditions_see_the_user(self) -> None:
        not_me = hook(
            "ns",
            [NAMESPACE_RULE],
            matchConditions=[{"name": "x", "expression": 'request.userInfo.username != "me"'}],
        )
        dispatch = AdmissionDispatch([config(not_me)], {}, Recorder())
        assert dispatch.request(Caller("me"), "CREATE", NAMESPACES, namespace({})).called == []
        assert dispatch.request(Caller("you"), "CREATE", NAMESPACES, namespace({})).called == ["ns"]


class TestFailurePolicy:
    @pytest.mark.parametrize(("policy", "allowed"), [("Fail", False), ("Ignore", True)])
    def test_an_unreachable_webhook(self, policy: str, allowed: bool) -> None:
        down = hook("ns", [NAMESPACE_RULE], failurePolicy=policy)
        dispatch = AdmissionDispatch([config(down)], {}, Recorder(reachable=False))
        assert dispatch.request(ADMIN, "CREATE", NAMESPACES, namespace({})).allowed is allowed

    def test_a_condition_that_cannot_be_evaluated_applies_the_failure_policy(self) -> None:
        broken = hook(
            "ns",
            [NAMESPACE_RULE],
            matchConditions=[{"name": "x", "expression": "object.spec.nothing == 1"}],
        )
        dispatch = AdmissionDispatch([config(broken)], {}, Recorder())
        assert not dispatch.request(ADMIN, "CREATE", NAMESPACES, namespace({})).allowed

    def test_every_validating_webhook_is_called_and_any_refusal_refuses(self) -> None:
        dispatch = AdmissionDispatch(
            [config(hook("a", [NAMESPACE_RULE]), hook("b", [NAMESPACE_RULE]))],
            {},
            Recorder(allowed=False),
        )
        outcome = dispatch.request(ADMIN, "CREATE", NAMESPACES, namespace({}))
        assert (outcome.allowed, outcome.message, outcome.called) == (False, "no", ["a", "b"])

    def test_a_mutating_refusal_ends_the_request(self) -> None:
        mutating = {
            "kind": "MutatingWebhookConfiguration",
            "webhooks": [hook("m", [NAMESPACE_RULE])],
        }
        dispatch = AdmissionDispatch(
            [mutating, config(hook("v", [NAMESPACE_RULE]))], {}, Recorder(allowed=False)
        )
        outcome = dispatch.request(ADMIN, "CREATE", NAMESPACES, namespace({}))
        assert (outcome.allowed, outcome.called) == (False, ["m"])
