"""A tenant against the Cilium and Istio backends: the rendered webhook rules and match
conditions (through the admission-dispatch double) and the controller's verdicts, for a tenant
with the `edit` role trying to undo what the profiles hold.

- egress-guard's own CiliumNetworkPolicies, ServiceEntries and Sidecars are changed by it alone;
- a tenant's CiliumNetworkPolicy with egress rules (in `spec` or in `specs`) widens, since Cilium
  allows what any policy allows: refused in enforce;
- a tenant's Sidecar selecting workloads competes with a profile's: refused where Istio is used;
- a tenant's ServiceEntry posing as a Service (which the profiles' Sidecars name) is refused;
- what opens nothing (egressDeny, a namespace-wide Sidecar) is not even sent.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from admission_dispatch import AdmissionDispatch, Caller, Resource
from builders import BACKENDS, MODE, PROFILE, policy_with

from webhook.admission.controller import AdmissionController
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import FixedPolicy
from webhook.core.egress_objects import egress_intents
from webhook.core.kube_names import own_users
from webhook.core.namespace import namespace_context
from webhook.core.policy import Policy
from webhook.deploy.objects import (
    DeployOptions,
    mutating_webhook_configuration,
    validating_webhook_configuration,
)
from webhook.http.app import create_app

CNPS = Resource("cilium.io", "v2", "ciliumnetworkpolicies", "CiliumNetworkPolicy")
SIDECARS = Resource("networking.istio.io", "v1", "sidecars", "Sidecar")
ENTRIES = Resource("networking.istio.io", "v1", "serviceentries", "ServiceEntry")
TENANT = Caller("alice", ("system:authenticated", "tenants"))
EGRESS_GUARD = Caller.service_account("egress-guard", "egress-guard")
NAMESPACES = {
    "shop": {MODE: "enforce"},
    "previews": {MODE: "warn", "egress-guard.io/inject": "networkpolicy"},
    "no-mesh": {MODE: "enforce", BACKENDS: "networkpolicy_cilium"},
}


@pytest.fixture
def dispatch(policy: Policy) -> AdmissionDispatch:
    meshed = policy_with(policy, backends=["networkpolicy", "cilium", "istio"])
    source = FixedPolicy(meshed)
    controller = AdmissionController(
        source,
        StaticNamespaceSource(source, overrides=NAMESPACES),
        ReportingNetworkPolicyApplier(),
        own_users=own_users("egress-guard", "egress-guard"),
    )
    client = create_app(controller).test_client()

    def send(path: str, review: dict[str, Any]) -> tuple[int, Any]:
        reply = client.post(path, json=review)
        return reply.status_code, reply.get_json()

    options = DeployOptions()
    configurations = [
        validating_webhook_configuration(meshed, options),
        mutating_webhook_configuration(meshed, options),
    ]
    found = AdmissionDispatch(configurations, NAMESPACES, send)
    found.policy = meshed  # type: ignore[attr-defined]
    return found


def cnp(spec: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "tenant", "namespace": "shop"},
        **fields,
    }
    if spec is not None:
        obj["spec"] = spec
    return obj


def sidecar(spec: dict[str, Any], namespace: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "tenant", "namespace": namespace},
        "spec": spec,
    }


def entry(host: str, namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "tenant", "namespace": namespace},
        "spec": {"hosts": [host], "ports": [{"number": 443, "name": "tls"}], **spec},
    }


WORLD = {"endpointSelector": {}, "egress": [{"toEntities": ["world"]}]}


def generated(dispatch: AdmissionDispatch, kind: str) -> dict[str, Any]:
    policy: Policy = dispatch.policy  # type: ignore[attr-defined]
    context = namespace_context("shop", NAMESPACES["shop"], policy)
    (intent,) = egress_intents("shop", context, policy, "stripe")
    found = next(m for m in intent.manifests if m["kind"] == kind)
    return copy.deepcopy(dict(found))


class TestCiliumNetworkPolicies:
    def test_a_tenant_s_egress_rules_are_refused(self, dispatch: AdmissionDispatch) -> None:
        outcome = dispatch.request(TENANT, "CREATE", CNPS, cnp(WORLD), namespace="shop")
        assert not outcome.allowed
        assert "which Cilium adds to what the profiles allow" in outcome.message
        assert outcome.called == ["networkpolicies.validate.egress-guard.io"]

    def test_rules_in_specs_are_refused_too(self, dispatch: AdmissionDispatch) -> None:
        """The other place a CiliumNetworkPolicy holds rules: the match conditions send it."""
        obj = cnp(None, specs=[{"endpointSelector": {}, "ingress": [{}]}, WORLD])
        outcome = dispatch.request(TENANT, "CREATE", CNPS, obj, namespace="shop")
        assert not outcome.allowed and outcome.called

    def test_what_opens_nothing_is_not_even_sent(self, dispatch: AdmissionDispatch) -> None:
        deny = cnp({"endpointSelector": {}, "egressDeny": [{"toEntities": ["world"]}]})
        outcome = dispatch.request(TENANT, "CREATE", CNPS, deny, namespace="shop")
        assert outcome.allowed and outcome.called == []

    def test_warn_mode_warns(self, dispatch: AdmissionDispatch) -> None:
        obj = cnp(WORLD)
        obj["metadata"]["namespace"] = "previews"
        outcome = dispatch.request(TENANT, "CREATE", CNPS, obj, namespace="previews")
        assert outcome.allowed
        assert any("Cilium adds" in w for w in outcome.warnings)

    def test_an_update_keeping_old_rules_passes_a_new_rule_does_not(
        self, dispatch: AdmissionDispatch
    ) -> None:
        old = cnp(WORLD)
        relabelled = copy.deepcopy(old)
        relabelled["metadata"]["labels"] = {"team": "a"}
        kept = dispatch.request(TENANT, "UPDATE", CNPS, relabelled, old=old, namespace="shop")
        assert kept.allowed
        wider = copy.deepcopy(old)
        wider["spec"]["egress"].append({"toCIDR": ["0.0.0.0/0"]})
        assert not dispatch.request(
            TENANT, "UPDATE", CNPS, wider, old=old, namespace="shop"
        ).allowed

    def test_egress_guard_s_own_are_its_alone(self, dispatch: AdmissionDispatch) -> None:
        own = generated(dispatch, "CiliumNetworkPolicy")
        edited = copy.deepcopy(own)
        edited["spec"]["egress"].append({"toEntities": ["world"]})
        for operation, new, old in (
            ("UPDATE", edited, own),
            ("DELETE", None, own),
            ("CREATE", own, None),
        ):
            outcome = dispatch.request(TENANT, operation, CNPS, new, old=old, namespace="shop")
            assert not outcome.allowed, operation
            assert "is egress-guard's" in outcome.message
            by_itself = dispatch.request(
                EGRESS_GUARD, operation, CNPS, new, old=old, namespace="shop"
            )
            assert by_itself.allowed and by_itself.called == []  # never sent: no deadlock


class TestIstio:
    def test_a_sidecar_selecting_workloads_is_refused(self, dispatch: AdmissionDispatch) -> None:
        spec = {
            "workloadSelector": {"labels": {PROFILE: "stripe"}},
            "outboundTrafficPolicy": {"mode": "ALLOW_ANY"},
        }
        outcome = dispatch.request(TENANT, "CREATE", SIDECARS, sidecar(spec), namespace="shop")
        assert not outcome.allowed
        assert "Istio applies one of them" in outcome.message

    def test_a_namespace_wide_sidecar_is_not_sent(self, dispatch: AdmissionDispatch) -> None:
        spec = {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}
        outcome = dispatch.request(TENANT, "CREATE", SIDECARS, sidecar(spec), namespace="shop")
        assert outcome.allowed and outcome.called == []

    def test_where_istio_is_not_used_a_sidecar_is_the_tenant_s(
        self, dispatch: AdmissionDispatch
    ) -> None:
        spec = {"workloadSelector": {"labels": {"app": "a"}}}
        obj = sidecar(spec, namespace="no-mesh")
        outcome = dispatch.request(TENANT, "CREATE", SIDECARS, obj, namespace="no-mesh")
        assert outcome.allowed

    def test_a_tenant_s_service_entry_is_its_own(self, dispatch: AdmissionDispatch) -> None:
        outcome = dispatch.request(
            TENANT, "CREATE", ENTRIES, entry("example.com"), namespace="shop"
        )
        assert outcome.allowed

    def test_one_posing_as_a_service_is_refused(self, dispatch: AdmissionDispatch) -> None:
        """The profiles' Sidecars name the namespace's Services (`./*.shop.svc.cluster.local`):
        an entry under that name would reach addresses of the tenant's choosing."""
        posing = entry("exfil.shop.svc.cluster.local", addresses=["0.0.0.0/0"])
        outcome = dispatch.request(TENANT, "CREATE", ENTRIES, posing, namespace="shop")
        assert not outcome.allowed
        assert "exfil.shop.svc.cluster.local" in outcome.message
        elsewhere = entry("exfil.no-mesh.svc.cluster.local", namespace="no-mesh")
        assert dispatch.request(TENANT, "CREATE", ENTRIES, elsewhere, namespace="no-mesh").allowed

    @pytest.mark.parametrize("kind", ["ServiceEntry", "Sidecar"])
    def test_egress_guard_s_own_are_its_alone(self, dispatch: AdmissionDispatch, kind: str) -> None:
        resource = ENTRIES if kind == "ServiceEntry" else SIDECARS
        own = generated(dispatch, kind)
        outcome = dispatch.request(TENANT, "DELETE", resource, None, old=own, namespace="shop")
        assert not outcome.allowed
        assert f'{kind} "{own["metadata"]["name"]}" is egress-guard\'s' in outcome.message
