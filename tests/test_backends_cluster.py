"""Cilium and Istio objects through a cluster: made before the workload is admitted, remembered,
made again when deleted or edited, refused when their CRD is missing, reconciled and pruned.

The local API double serves the real CRDs from ../shared/corpus/crds (their schemas applied,
unknown fields pruned, defaults filled), so what egress-guard writes is what a real API server
would accept and store; without the corpus these tests skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from builders import BACKENDS, PROFILE, ns_labels, placed, policy_with, request, workload
from kubernetes import client
from local_apiserver import Fault, LocalApiServer
from test_cluster_admission import SwappablePolicy, delete, namespace, relabel, wait_for

from webhook.admission.controller import AdmissionController, ReviewResult
from webhook.cluster.kube import ClusterConnection, connect
from webhook.core.backends import CILIUM_NETWORK_POLICY, SERVICE_ENTRY, SIDECAR
from webhook.core.decision import Verdict
from webhook.core.evaluate import Action
from webhook.core.istio_objects import entry_name
from webhook.core.network_policies import DEFAULT_DENY_NAME, MANAGED_BY, MANAGED_BY_LABEL
from webhook.core.policy import Policy
from webhook.reconcile.reconciler import Reconciler

CRDS = Path(__file__).resolve().parents[2] / "shared/corpus/crds"


@pytest.fixture(autouse=True)
def corpus_crds() -> None:
    """Every test here installs the real CRDs of ../shared/corpus; without it they skip."""
    if not CRDS.exists():
        pytest.skip("../shared/corpus is not here")


CILIUM_CRDS = CRDS / "cilium-ciliumnetworkpolicies.yaml"
ISTIO_CRDS = CRDS / "istio-serviceentry-sidecar.yaml"
STRIPE = "egress-guard-profile-stripe"
ALL_THREE = ["networkpolicy", "cilium", "istio"]
STRIPE_API = entry_name(STRIPE, "api.stripe.com", [443])
STRIPE_RANGE = entry_name(STRIPE, "34.210.129.0/24", [443])


def replace(api: LocalApiServer, plural: str, obj: dict[str, Any]) -> None:
    """Write an edited object back, as `kubectl replace` would (watches see it)."""
    metadata = obj["metadata"]
    rt = api.resource(plural)
    api.store.update(rt, metadata["namespace"], metadata["name"], obj, dry_run=False, strict=False)


def live(api: LocalApiServer, plural: str, namespace: str = "payments") -> dict[str, Any]:
    """The generated objects of a resource in a namespace, by name."""
    return {
        obj["metadata"]["name"]: obj
        for obj in api.objects(plural, namespace)
        if obj["metadata"].get("labels", {}).get(MANAGED_BY_LABEL) == MANAGED_BY
    }


class Meshed:
    """A cluster with Cilium's and Istio's CRDs, and egress-guard connected to it."""

    def __init__(self, api: LocalApiServer, connection: ClusterConnection, policy: Policy):
        self.api = api
        self.connection = connection
        self.controller = AdmissionController(
            SwappablePolicy(policy), connection.namespaces, connection.network_policies
        )

    def admit(self, namespace: str = "payments", profile: str = "stripe") -> ReviewResult:
        obj = workload("Deployment", {"app": "web", PROFILE: profile})
        return self.controller.review(request(obj, namespace=namespace), Action.VALIDATE)


@pytest.fixture
def meshed_policy(policy: Policy) -> Policy:
    return policy_with(policy, backends=ALL_THREE)


def _connect(api: LocalApiServer, kubeconfig: Path, policy: Policy) -> ClusterConnection:
    connection = connect("kubeconfig", SwappablePolicy(policy), kubeconfig=str(kubeconfig))
    assert connection.namespaces.synced.wait(10)
    assert connection.synced(10), "a generated kind was never listed"
    for plural in ("networkpolicies", "ciliumnetworkpolicies", "serviceentries", "sidecars"):
        wait_for(lambda plural=plural: api.count("watch", plural) == 1)  # type: ignore[misc]
    return connection


@pytest.fixture
def meshed(local_api: LocalApiServer, kubeconfig: Path, meshed_policy: Policy) -> Iterator[Meshed]:
    local_api.install_crds(CILIUM_CRDS, ISTIO_CRDS)
    local_api.seed(
        namespace("payments", ns_labels("enforce")),
        namespace("sidecars-only", {**ns_labels("enforce"), BACKENDS: "istio"}),
    )
    connection = _connect(local_api, kubeconfig, meshed_policy)
    try:
        local_api.reset_calls()
        yield Meshed(local_api, connection, meshed_policy)
    finally:
        connection.close()


class TestAdmission:
    def test_every_backend_s_objects_exist_before_the_workload_is_admitted(
        self, meshed: Meshed
    ) -> None:
        outcome = meshed.admit()
        assert outcome.decision.allowed, outcome.decision.message
        (applied,) = outcome.applied
        assert set(applied.created) == {
            DEFAULT_DENY_NAME,
            STRIPE,
            f"CiliumNetworkPolicy/{DEFAULT_DENY_NAME}",
            f"CiliumNetworkPolicy/{STRIPE}",
            f"ServiceEntry/{STRIPE_API}",
            f"ServiceEntry/{STRIPE_RANGE}",
            f"Sidecar/{STRIPE}",
        }
        cnp = live(meshed.api, "ciliumnetworkpolicies")[STRIPE]
        fqdns = [s for rule in cnp["spec"]["egress"] for s in rule.get("toFQDNs", ())]
        assert fqdns == [{"matchName": "api.stripe.com"}]
        entry = live(meshed.api, "serviceentries")[STRIPE_API]
        assert entry["spec"]["hosts"] == ["api.stripe.com"]
        sidecar = live(meshed.api, "sidecars")[STRIPE]
        assert sidecar["spec"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
        writes = [c for c in meshed.api.calls if c.is_write]
        assert all(c.status == 201 for c in writes), writes

    def test_what_the_server_stores_is_what_was_rendered(self, meshed: Meshed) -> None:
        """The CRD schemas prune and default: a rendering they would change would look drifted
        on every admission. A second admission makes no call."""
        meshed.admit()
        meshed.api.reset_calls()
        outcome = meshed.admit()
        assert outcome.decision.allowed
        assert len(outcome.applied[0].unchanged) == 7
        assert [c for c in meshed.api.calls if c.verb != "watch"] == []

    def test_a_namespace_narrowed_to_istio_gets_only_istio_objects(self, meshed: Meshed) -> None:
        outcome = meshed.admit(namespace="sidecars-only")
        assert outcome.decision.allowed
        assert set(outcome.applied[0].created) == {
            f"ServiceEntry/{STRIPE_API}",
            f"ServiceEntry/{STRIPE_RANGE}",
            f"Sidecar/{STRIPE}",
        }
        assert live(meshed.api, "networkpolicies", "sidecars-only") == {}
        assert live(meshed.api, "ciliumnetworkpolicies", "sidecars-only") == {}
        assert any("pods can bypass" in w for w in outcome.decision.warnings)

    def test_a_deleted_cilium_policy_is_made_again_on_the_next_admission(
        self, meshed: Meshed
    ) -> None:
        meshed.admit()
        delete(meshed.api, "ciliumnetworkpolicies", STRIPE, "payments")
        wait_for(lambda: f"CiliumNetworkPolicy/{STRIPE}" not in remembered(meshed))
        outcome = meshed.admit()
        assert outcome.applied[0].created == (f"CiliumNetworkPolicy/{STRIPE}",)
        assert STRIPE in live(meshed.api, "ciliumnetworkpolicies")

    def test_an_edited_sidecar_is_put_back(self, meshed: Meshed) -> None:
        meshed.admit()
        sidecar = live(meshed.api, "sidecars")[STRIPE]
        sidecar["spec"]["outboundTrafficPolicy"] = {"mode": "ALLOW_ANY"}
        replace(meshed.api, "sidecars", sidecar)
        wait_for(lambda: f"Sidecar/{STRIPE}" not in remembered(meshed))
        outcome = meshed.admit()
        assert outcome.applied[0].updated == (f"Sidecar/{STRIPE}",)
        restored = live(meshed.api, "sidecars")[STRIPE]
        assert restored["spec"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}

    def test_a_same_named_object_egress_guard_did_not_make_refuses_the_workload(
        self, meshed: Meshed
    ) -> None:
        own = {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": STRIPE, "namespace": "payments"},
            "spec": {"endpointSelector": {}, "egress": [{"toEntities": ["world"]}]},
        }
        meshed.api.seed(own)
        outcome = meshed.admit()
        assert outcome.decision.verdict is Verdict.DENIED
        assert f"CiliumNetworkPolicy payments/{STRIPE} exists but was not generated" in (
            outcome.decision.message
        )
        kept = meshed.api.get("ciliumnetworkpolicies", STRIPE, "payments")
        assert kept is not None and kept["spec"] == own["spec"]  # never overwritten


def remembered(meshed: Meshed) -> set[str]:
    entry = meshed.connection.network_policies._in_place.get("payments")
    return set(entry.policies) if entry is not None else set()


class TestMissingCrd:
    @pytest.fixture
    def without_cilium(
        self, local_api: LocalApiServer, kubeconfig: Path, meshed_policy: Policy
    ) -> Iterator[Meshed]:
        local_api.install_crds(ISTIO_CRDS)
        local_api.seed(
            namespace("payments", ns_labels("enforce")),
            namespace("previews", ns_labels("warn", "networkpolicy")),
        )
        connection = connect(
            "kubeconfig", SwappablePolicy(meshed_policy), kubeconfig=str(kubeconfig)
        )
        assert connection.synced(10)
        try:
            yield Meshed(local_api, connection, meshed_policy)
        finally:
            connection.close()

    def test_an_enforcing_namespace_refuses_naming_the_crd(self, without_cilium: Meshed) -> None:
        outcome = without_cilium.admit()
        assert not outcome.decision.allowed
        assert "the CRD ciliumnetworkpolicies.cilium.io is not installed" in (
            outcome.decision.message
        )

    def test_a_warn_namespace_admits_and_says_why_nothing_holds_it(
        self, without_cilium: Meshed
    ) -> None:
        outcome = without_cilium.admit(namespace="previews")
        assert outcome.decision.allowed
        assert any("ciliumnetworkpolicies.cilium.io" in w for w in outcome.decision.warnings)

    def test_readiness_stays_and_says_it(self, without_cilium: Meshed) -> None:
        connection = without_cilium.connection
        assert connection.not_ready() is None  # other namespaces are still served
        (warning,) = connection.warnings()
        assert "ciliumnetworkpolicies.cilium.io" in warning

    def test_a_kind_the_role_does_not_grant_leaves_the_webhook_ready(
        self, local_api: LocalApiServer, kubeconfig: Path, meshed_policy: Policy
    ) -> None:
        """`cilium` added to the policy file without the RBAC rendered for it: the webhook stays
        ready for every namespace, says why, and the namespaces that use it are refused."""
        local_api.install_crds(CILIUM_CRDS, ISTIO_CRDS)
        local_api.seed(namespace("payments", ns_labels("enforce")))
        forbidden = {"status": 403, "reason": "Forbidden", "times": None}
        local_api.add_fault(Fault(verb="list", resource="ciliumnetworkpolicies", **forbidden))
        local_api.add_fault(Fault(verb="create", resource="ciliumnetworkpolicies", **forbidden))
        connection = connect(
            "kubeconfig", SwappablePolicy(meshed_policy), kubeconfig=str(kubeconfig)
        )
        try:
            assert connection.synced(10)
            assert connection.not_ready() is None
            (warning,) = connection.warnings()
            assert "role may not list it" in warning
            outcome = Meshed(local_api, connection, meshed_policy).admit()
            assert not outcome.decision.allowed
            assert "ciliumnetworkpolicies.cilium.io" in outcome.decision.message
        finally:
            connection.close()

    def test_the_watch_finds_the_crd_once_installed(
        self,
        local_api: LocalApiServer,
        kubeconfig: Path,
        meshed_policy: Policy,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A kind not served is listed again now and then: once its CRD is installed the
        warning goes and its objects are watched (and remembered) like the others."""
        monkeypatch.setattr("webhook.cluster.list_watch.ABSENT_RECHECK_S", 0.2)
        local_api.install_crds(ISTIO_CRDS)
        local_api.seed(namespace("payments", ns_labels("enforce")))
        policies = SwappablePolicy(meshed_policy)
        connection = connect("kubeconfig", policies, kubeconfig=str(kubeconfig))
        try:
            assert connection.synced(10)
            assert len(connection.warnings()) == 1
            local_api.install_crds(CILIUM_CRDS)
            wait_for(lambda: connection.warnings() == ())
            wait_for(lambda: local_api.count("watch", "ciliumnetworkpolicies") == 1)
            meshed = Meshed(local_api, connection, meshed_policy)
            assert meshed.admit().decision.allowed
            assert f"CiliumNetworkPolicy/{STRIPE}" in remembered(meshed)
        finally:
            connection.close()

    def test_installing_the_crd_later_is_noticed(self, without_cilium: Meshed) -> None:
        """Admission writes what the new CRD serves at once, but remembers none of it until
        the watch follows the kind: a deletion meanwhile would go unseen."""
        without_cilium.api.install_crds(CILIUM_CRDS)
        outcome = without_cilium.admit()
        assert outcome.decision.allowed, outcome.decision.message
        assert STRIPE in live(without_cilium.api, "ciliumnetworkpolicies")
        assert not any(ref.startswith("CiliumNetworkPolicy/") for ref in remembered(without_cilium))
        assert STRIPE in remembered(without_cilium)  # the NetworkPolicies are
        delete(without_cilium.api, "ciliumnetworkpolicies", STRIPE, "payments")
        again = without_cilium.admit()
        assert again.applied[0].created == (f"CiliumNetworkPolicy/{STRIPE}",)


class TestReconciler:
    def test_it_makes_repairs_and_prunes_each_backend_s_objects(
        self, meshed: Meshed, kube: client.ApiClient, meshed_policy: Policy
    ) -> None:
        api = meshed.api
        api.seed(placed(workload("Deployment", {PROFILE: "stripe"}), "payments"))
        reconciler = Reconciler(kube, SwappablePolicy(meshed_policy))
        first = reconciler.run_once()
        assert first.complete, first.errors
        assert f"payments/CiliumNetworkPolicy/{STRIPE}" in first.created
        assert f"payments/Sidecar/{STRIPE}" in first.created
        entry = live(api, "serviceentries")[STRIPE_API]
        entry["spec"]["hosts"] = ["example.com"]
        replace(api, "serviceentries", entry)
        delete(api, "ciliumnetworkpolicies", DEFAULT_DENY_NAME, "payments")
        second = reconciler.run_once()
        assert second.updated == [f"payments/ServiceEntry/{STRIPE_API}"]
        assert second.created == [f"payments/CiliumNetworkPolicy/{DEFAULT_DENY_NAME}"]
        assert live(api, "serviceentries")[STRIPE_API]["spec"]["hosts"] == ["api.stripe.com"]
        relabel(api, "payments", {})
        third = reconciler.run_once()
        assert third.complete, third
        assert f"payments/Sidecar/{STRIPE}" in third.deleted
        assert f"payments/CiliumNetworkPolicy/{STRIPE}" in third.deleted
        for plural in (
            "networkpolicies",
            "ciliumnetworkpolicies",
            "serviceentries",
            "sidecars",
        ):
            assert live(api, plural) == {}, plural

    def test_a_backend_taken_out_of_the_policy_file_is_pruned(
        self, meshed: Meshed, kube: client.ApiClient, meshed_policy: Policy
    ) -> None:
        api = meshed.api
        api.seed(placed(workload("Deployment", {PROFILE: "stripe"}), "payments"))
        policies = SwappablePolicy(meshed_policy)
        assert Reconciler(kube, policies).run_once().complete
        policies.policy = policy_with(meshed_policy, backends=["networkpolicy"])
        report = Reconciler(kube, policies).run_once()
        assert report.complete, report.errors
        assert live(api, "ciliumnetworkpolicies") == {}
        assert live(api, "sidecars") == {}
        assert set(live(api, "networkpolicies")) == {DEFAULT_DENY_NAME, STRIPE}

    def test_a_namespace_keeps_its_old_backend_until_the_new_one_is_in_place(
        self, local_api: LocalApiServer, kube: client.ApiClient, policy: Policy
    ) -> None:
        """From NetworkPolicies to Cilium alone before Cilium's CRD is installed: pruning the
        NetworkPolicies would leave the namespace with nothing. They stay (deferred) until the
        CiliumNetworkPolicies are made, then go in the same pass."""
        local_api.seed(namespace("payments", ns_labels("enforce")))
        local_api.seed(placed(workload("Deployment", {PROFILE: "stripe"}), "payments"))
        policies = SwappablePolicy(policy)
        assert Reconciler(kube, policies).run_once().complete
        assert set(live(local_api, "networkpolicies")) == {DEFAULT_DENY_NAME, STRIPE}
        policies.policy = policy_with(policy, backends=["cilium"])
        reconciler = Reconciler(kube, policies)
        stuck = reconciler.run_once()
        assert any("ciliumnetworkpolicies.cilium.io" in e for e in stuck.errors)
        assert stuck.deleted == []
        assert sorted(stuck.deferred) == [
            f"payments/{DEFAULT_DENY_NAME}",
            f"payments/{STRIPE}",
        ]
        assert set(live(local_api, "networkpolicies")) == {DEFAULT_DENY_NAME, STRIPE}
        local_api.install_crds(CILIUM_CRDS)
        moved = reconciler.run_once()
        assert moved.complete, moved.errors
        assert sorted(moved.created) == [
            f"payments/CiliumNetworkPolicy/{DEFAULT_DENY_NAME}",
            f"payments/CiliumNetworkPolicy/{STRIPE}",
        ]
        assert sorted(moved.deleted) == [f"payments/{DEFAULT_DENY_NAME}", f"payments/{STRIPE}"]
        assert live(local_api, "networkpolicies") == {}

    def test_a_missing_crd_is_one_error_and_the_rest_is_reconciled(
        self, local_api: LocalApiServer, kube: client.ApiClient, meshed_policy: Policy
    ) -> None:
        local_api.install_crds(ISTIO_CRDS)
        local_api.seed(namespace("payments", ns_labels("enforce")))
        report = Reconciler(kube, SwappablePolicy(meshed_policy)).run_once()
        (error,) = report.errors
        assert "ciliumnetworkpolicies.cilium.io is not installed" in error
        assert "payments/egress-guard-default-deny" in report.created
        assert not any("CiliumNetworkPolicy" in where for where in report.created)


def test_the_kinds_are_the_crds_kinds() -> None:
    """The kinds egress-guard writes are those the corpus's CRDs define, at a served version."""
    import yaml

    served = set()
    for path in (CILIUM_CRDS, ISTIO_CRDS):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd and crd.get("kind") == "CustomResourceDefinition":
                spec = crd["spec"]
                for version in spec["versions"]:
                    if version.get("served"):
                        served.add((spec["group"], version["name"], spec["names"]["plural"]))
    for kind in (CILIUM_NETWORK_POLICY, SERVICE_ENTRY, SIDECAR):
        assert (kind.group, kind.version, kind.plural) in served


def test_report_sees_each_backend_s_objects(
    meshed: Meshed, kubeconfig: Path, tmp_path: Path
) -> None:
    """`report` lists every kind the backends are made of: in place after admission, and a
    deleted Sidecar is said missing by its kind."""
    import json

    from click.testing import CliRunner

    from webhook.cli.main import main

    meshed.admit()
    meshed.api.seed(placed(workload("Deployment", {PROFILE: "stripe"}), "payments"))
    config = tmp_path / "policy.yaml"
    example = Path(__file__).parents[1] / "webhook/data/policy.example.yaml"
    text = example.read_text().replace(
        "backends: [networkpolicy]", "backends: " + json.dumps(ALL_THREE)
    )
    config.write_text(text)

    def policies_state() -> str:
        args = ["report", "--kubeconfig", str(kubeconfig), "--config", str(config), "-o", "json"]
        outcome = CliRunner().invoke(main, args)
        assert outcome.exit_code == 0, outcome.output
        (entry,) = json.loads(outcome.stdout)["workloads"]
        return str(entry["networkPolicies"])

    assert policies_state() == "in place"
    delete(meshed.api, "sidecars", STRIPE, "payments")
    assert policies_state() == f"missing: Sidecar/{STRIPE}"
