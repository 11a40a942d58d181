"""A fail-closed webhook's availability is part of security: with egress-guard down, the rendered
configurations refuse exactly the requests egress-guard could have refused, and nothing the
cluster needs (deleting a namespace, a tenant's harmless NetworkPolicies, status reports).

Dispatched as kube-apiserver does (admission_dispatch.py) to a webhook that cannot be reached.
"""

from __future__ import annotations

from typing import Any

import pytest
from admission_dispatch import NAMESPACES, NETWORK_POLICIES, PODS, AdmissionDispatch, Caller
from builders import PROFILE, pod, policy_with

from webhook.core.network_policies import render_default_deny
from webhook.core.policy import Policy
from webhook.deploy.objects import (
    DeployOptions,
    mutating_webhook_configuration,
    validating_webhook_configuration,
)

TENANT = Caller("alice", ("system:authenticated",))
NAMESPACE_CONTROLLER = Caller.service_account("kube-system", "namespace-controller")
GARBAGE_COLLECTOR = Caller.service_account("kube-system", "generic-garbage-collector")
KUBELET = Caller("system:node:n1", ("system:nodes", "system:authenticated"))


def unreachable(_path: str, _document: dict[str, Any]) -> tuple[int, Any]:
    raise ConnectionRefusedError("egress-guard is down")


@pytest.fixture(scope="module")
def governed(policy: Policy) -> Policy:
    return policy_with(policy, governance={"loosenNamespaces": {"groups": ["platform"]}})


@pytest.fixture(scope="module")
def down(governed: Policy) -> AdmissionDispatch:
    configurations = [
        validating_webhook_configuration(governed, DeployOptions()),
        mutating_webhook_configuration(governed, DeployOptions()),
    ]
    namespaces = {"payments": {"egress-guard.io/mode": "enforce"}}
    return AdmissionDispatch(configurations, namespaces, unreachable)


def tenant_policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "mine", "namespace": "payments"},
        "spec": spec,
    }


class TestNetworkPoliciesWhileDown:
    def test_emptying_a_namespace_being_deleted_never_waits(
        self, down: AdmissionDispatch, policy: Policy
    ) -> None:
        generated = render_default_deny("payments", policy)
        for caller in (NAMESPACE_CONTROLLER, GARBAGE_COLLECTOR):
            outcome = down.request(
                caller, "DELETE", NETWORK_POLICIES, None, old=generated, namespace="payments"
            )
            assert outcome.allowed and outcome.called == []

    def test_a_tenants_harmless_policies_never_wait(self, down: AdmissionDispatch) -> None:
        ingress = tenant_policy({"podSelector": {}, "ingress": [{}]})
        deny = tenant_policy({"podSelector": {}, "policyTypes": ["Egress"]})
        for obj in (ingress, deny):
            assert down.request(
                TENANT, "CREATE", NETWORK_POLICIES, obj, namespace="payments"
            ).allowed
        wide = tenant_policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]})
        deleted = down.request(
            TENANT, "DELETE", NETWORK_POLICIES, None, old=wide, namespace="payments"
        )
        assert deleted.allowed and deleted.called == []

    def test_what_may_widen_egress_fails_closed(
        self, down: AdmissionDispatch, policy: Policy
    ) -> None:
        wide = tenant_policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]})
        assert not down.request(
            TENANT, "CREATE", NETWORK_POLICIES, wide, namespace="payments"
        ).allowed
        generated = render_default_deny("payments", policy)
        assert not down.request(
            TENANT, "DELETE", NETWORK_POLICIES, None, old=generated, namespace="payments"
        ).allowed


class TestPodsWhileDown:
    def test_a_kubelets_status_report_never_waits(self, down: AdmissionDispatch) -> None:
        old = pod({PROFILE: "none"})
        new = {**old, "status": {"phase": "Running"}}
        outcome = down.request(
            KUBELET, "UPDATE", PODS, new, old=old, namespace="payments", subresource="status"
        )
        assert outcome.allowed and outcome.called == []

    def test_relabelling_a_pod_being_deleted_fails_closed(self, down: AdmissionDispatch) -> None:
        old = pod({PROFILE: "none"})
        old["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        new = {**old, "metadata": {**old["metadata"], "labels": {PROFILE: "stripe"}}}
        assert not down.request(TENANT, "UPDATE", PODS, new, old=old, namespace="payments").allowed


def namespace(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "payments",
            "labels": {"kubernetes.io/metadata.name": "payments", **labels},
        },
    }


class TestNamespacesWhileDown:
    @pytest.mark.parametrize("mode", ["enforce", "", "enforse"], ids=["enforce", "empty", "typo"])
    def test_loosening_an_enforcing_namespace_fails_closed(
        self, down: AdmissionDispatch, mode: str
    ) -> None:
        old = namespace({"egress-guard.io/mode": mode})
        for subresource in ("", "status", "finalize"):
            outcome = down.request(
                TENANT, "UPDATE", NAMESPACES, namespace({}), old=old, subresource=subresource
            )
            assert not outcome.allowed, (mode, subresource)

    def test_other_namespace_changes_never_wait(self, down: AdmissionDispatch) -> None:
        old = namespace({"egress-guard.io/mode": "warn"})
        for new in (
            {"egress-guard.io/mode": "audit"},
            {"egress-guard.io/mode": "warn", "team": "a"},
        ):
            assert down.request(TENANT, "UPDATE", NAMESPACES, namespace(new), old=old).allowed
        enforcing = namespace({"egress-guard.io/mode": "enforce"})
        relabelled = namespace({"egress-guard.io/mode": "enforce", "team": "a"})
        assert down.request(TENANT, "UPDATE", NAMESPACES, relabelled, old=enforcing).allowed
