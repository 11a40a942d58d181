"""`backends`: which systems a profile is rendered into, from the policy file and the namespace
label, and what each part of egress-guard (rendering, admission's intents, governance, the
reconcile plan, RBAC, `check`, `render`, /readyz) makes of it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import BACKENDS, MODE, PROFILE, policy_with, request, workload
from click.testing import CliRunner

from webhook.admission.controller import AdmissionController
from webhook.cli.main import main
from webhook.cluster.cluster_survey import ClusterSurvey
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import FixedPolicy, PolicyFileError, parse_policy
from webhook.core.backends import Backend, generated_kind, object_ref, parse_backends
from webhook.core.egress_objects import egress_intents, profile_findings
from webhook.core.evaluate import Action, validate
from webhook.core.findings import BACKEND_LIMITS, HOST_NAMES, NAMESPACE_LABELS
from webhook.core.istio_objects import entry_name
from webhook.core.namespace import namespace_context
from webhook.core.namespace_governance import loosening
from webhook.core.policy import Policy
from webhook.deploy.rbac import reconciler_rules, webhook_rules
from webhook.doctor.backends import check_backends
from webhook.doctor.results import Status
from webhook.http.app import create_app
from webhook.reconcile.plan import NamespaceState, plan_reconcile

ALL_THREE = ["networkpolicy", "cilium", "istio"]


@pytest.fixture
def meshed(policy: Policy) -> Policy:
    return policy_with(policy, backends=ALL_THREE)


def checks(findings: Any) -> list[str]:
    return [f.check for f in findings]


def labels(backends: str | None = None, mode: str = "enforce") -> dict[str, str]:
    found = {MODE: mode}
    if backends is not None:
        found[BACKENDS] = backends
    return found


class TestThePolicyFile:
    def test_networkpolicy_by_default(self, policy: Policy) -> None:
        assert policy.backend_set == (Backend.NETWORKPOLICY,)

    def test_any_combination_in_a_fixed_order(self) -> None:
        policy = parse_policy("backends: [istio, networkpolicy]\n", "policy.yaml")
        assert policy.backend_set == (Backend.NETWORKPOLICY, Backend.ISTIO)

    @pytest.mark.parametrize(
        ("text", "said"),
        [
            ("backends: []\n", "backends may not be empty"),
            ("backends: [cilium, cilium]\n", "lists cilium more than once"),
            ("backends: [calico]\n", "backends.0"),
            ("backends: networkpolicy\n", "backends"),
        ],
    )
    def test_bad_values_are_refused_with_where(self, text: str, said: str) -> None:
        with pytest.raises(PolicyFileError, match=said):
            parse_policy(text, "policy.yaml")


class TestTheNamespaceLabel:
    def test_narrows_to_some_of_the_file_s_backends(self, meshed: Policy) -> None:
        context = namespace_context("shop", labels("cilium_networkpolicy"), meshed)
        assert context.backends == (Backend.NETWORKPOLICY, Backend.CILIUM)
        assert context.notes == ()

    @pytest.mark.parametrize(
        "value", ["calico", "cilium,istio", "cilium_cilium", "", "Cilium", "istio_"]
    )
    def test_a_value_that_is_not_backends_keeps_them_all(self, meshed: Policy, value: str) -> None:
        context = namespace_context("shop", labels(value), meshed)
        assert context.backends == meshed.backend_set  # a typo takes no enforcement away
        (note,) = context.notes
        assert note.check == NAMESPACE_LABELS and value in note.reason

    def test_it_cannot_widen_the_file(self, policy: Policy) -> None:
        context = namespace_context("shop", labels("cilium"), policy)
        assert context.backends == (Backend.NETWORKPOLICY,)
        assert "is not some of networkpolicy" in context.notes[0].reason

    def test_parse(self) -> None:
        assert parse_backends("istio_cilium") == (Backend.CILIUM, Backend.ISTIO)
        assert parse_backends("istio,cilium") is None


class TestIntents:
    def test_each_backend_s_objects(self, meshed: Policy) -> None:
        context = namespace_context("shop", labels(), meshed)
        (intent,) = egress_intents("shop", context, meshed, "stripe")
        kinds = [generated_kind(m).kind for m in intent.manifests]
        assert kinds == [
            "NetworkPolicy",
            "NetworkPolicy",
            "CiliumNetworkPolicy",
            "CiliumNetworkPolicy",
            "ServiceEntry",
            "ServiceEntry",
            "Sidecar",
        ]
        assert intent.required
        assert len(set(intent.names)) == len(intent.names)  # kinds share names, refs do not

    def test_no_profile_gets_the_default_denies_only(self, meshed: Policy) -> None:
        context = namespace_context("shop", labels(), meshed)
        (intent,) = egress_intents("shop", context, meshed, None)
        assert [object_ref(m) for m in intent.manifests] == [
            "egress-guard-default-deny",
            "CiliumNetworkPolicy/egress-guard-default-deny",
        ]

    def test_host_names_are_advice_only_where_no_backend_holds_them(self, meshed: Policy) -> None:
        plain = namespace_context("shop", labels("networkpolicy"), meshed)
        assert [f.check for f in profile_findings("shop", "stripe", plain, meshed)] == [HOST_NAMES]
        for value in ("cilium", "networkpolicy_cilium", "cilium_istio"):
            context = namespace_context("shop", labels(value), meshed)
            assert HOST_NAMES not in checks(profile_findings("shop", "stripe", context, meshed))
        # a NetworkPolicy beside Istio drops the sidecar's connections to the names all the same
        paired = namespace_context("shop", labels("networkpolicy_istio"), meshed)
        assert HOST_NAMES in checks(profile_findings("shop", "stripe", paired, meshed))

    def test_istio_alone_is_said(self, meshed: Policy) -> None:
        context = namespace_context("shop", labels("istio"), meshed)
        found = profile_findings("shop", "stripe", context, meshed)
        assert checks(found) == [BACKEND_LIMITS, BACKEND_LIMITS]
        assert "bypass" in found[-1].reason
        assert (
            "api.stripe.com on any port, of which Istio holds 443 (TLS) alone" in found[0].reason
        )  # no ports declared

    def test_admission_carries_them_as_one_intent(self, meshed: Policy) -> None:
        obj = workload("Deployment", {PROFILE: "stripe"})
        decision = validate(request(obj, namespace="shop"), labels(), meshed)
        assert decision.allowed
        (intent,) = decision.intents
        assert "Sidecar/egress-guard-profile-stripe" in intent.names


class TestGovernance:
    def test_narrowing_backends_is_loosening(self, meshed: Policy) -> None:
        before = namespace_context("shop", labels(), meshed)
        after = namespace_context("shop", labels("istio"), meshed)
        change = loosening(before, after)
        assert change is not None and change.what == "backends"
        assert (change.before, change.after) == ("networkpolicy_cilium_istio", "istio")
        assert loosening(after, before) is None  # widening is tightening

    def test_a_typo_is_not_loosening(self, meshed: Policy) -> None:
        before = namespace_context("shop", labels(), meshed)
        assert loosening(before, namespace_context("shop", labels("istoi"), meshed)) is None


class TestPlan:
    def test_a_backend_no_longer_used_is_retired_at_once(self, meshed: Policy) -> None:
        """Only a profile's objects of a backend still in use wait for a second pass; those of
        a backend no longer used are retired in the first (deleted by the reconciler once the
        objects of the namespace's backends are in place)."""
        state = NamespaceState("shop", labels(), frozenset({"stripe"}))
        context = namespace_context("shop", labels(), meshed)
        (intent,) = egress_intents("shop", context, meshed, "stripe")
        live = [{**m, "metadata": {**m["metadata"], "uid": "u"}} for m in intent.manifests]
        narrowed = NamespaceState("shop", labels("networkpolicy"), frozenset({"stripe"}))
        plan = plan_reconcile(meshed, [narrowed], live, prune=True)
        assert plan.deletes == ()  # retired: deleted once the new backend's are in place
        assert sorted(object_ref(m) for m in plan.retired) == sorted(
            object_ref(m) for m in intent.manifests if m["kind"] != "NetworkPolicy"
        )
        assert plan.deferred == ()
        unused = NamespaceState("shop", labels(), frozenset())
        plan = plan_reconcile(meshed, [unused], live, prune=True)
        assert plan.deletes == ()  # stripe unused: its objects wait for the next pass
        assert ("shop", "Sidecar/egress-guard-profile-stripe") in plan.deferred
        assert plan_reconcile(meshed, [state], live, prune=True).empty


class TestRbac:
    def test_only_the_kinds_of_the_file_s_backends(self, policy: Policy, meshed: Policy) -> None:
        def groups(rules: Any) -> set[str]:
            return {group for group, _, _ in rules}

        assert groups(webhook_rules(policy)) == {"", "networking.k8s.io"}
        assert "cilium.io" not in groups(reconciler_rules(policy))
        rules = {group: (resources, verbs) for group, resources, verbs in webhook_rules(meshed)}
        assert rules["cilium.io"] == (("ciliumnetworkpolicies",), WEBHOOK_VERBS)
        assert rules["networking.istio.io"] == (("serviceentries", "sidecars"), WEBHOOK_VERBS)
        reconciler = {g: (r, v) for g, r, v in reconciler_rules(meshed)}
        assert "delete" in reconciler["cilium.io"][1] and "delete" not in rules["cilium.io"][1]

    def test_manifests_renders_them(self, tmp_path: Path) -> None:
        config = tmp_path / "policy.yaml"
        config.write_text("backends: [cilium]\n")
        outcome = CliRunner().invoke(main, ["manifests", "--config", str(config)])
        assert outcome.exit_code == 0, outcome.output
        roles = [
            d
            for d in yaml.safe_load_all(outcome.stdout)
            if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == "egress-guard-webhook"
        ]
        (role,) = roles
        groups = {group for rule in role["rules"] for group in rule["apiGroups"]}
        assert "cilium.io" in groups and "networking.k8s.io" not in groups


WEBHOOK_VERBS = ("get", "list", "watch", "create", "update")


class TestCli:
    @pytest.fixture
    def files(self, tmp_path: Path) -> tuple[Path, Path]:
        config = tmp_path / "policy.yaml"
        config.write_text(
            "backends: [networkpolicy, cilium, istio]\n"
            "profiles:\n  stripe:\n    allow:\n      - host: api.stripe.com\n        ports: [443]\n"
        )
        manifest = tmp_path / "deployment.yaml"
        manifest.write_text(yaml.safe_dump(workload("Deployment", {PROFILE: "stripe"})))
        return config, manifest

    def test_check_json_lists_the_intents(self, files: tuple[Path, Path]) -> None:
        config, manifest = files
        args = ["check", "--config", str(config), "-f", str(manifest), "-n", "shop"]
        outcome = CliRunner().invoke(main, [*args, "--mode", "enforce", "-o", "json"])
        assert outcome.exit_code == 0, outcome.output
        (item,) = json.loads(outcome.stdout)["items"]
        intents = item["injected"]["intents"]
        assert {(i["backend"], i["kind"], i["name"]) for i in intents} == {
            ("networkpolicy", "NetworkPolicy", "egress-guard-default-deny"),
            ("networkpolicy", "NetworkPolicy", "egress-guard-profile-stripe"),
            ("cilium", "CiliumNetworkPolicy", "egress-guard-default-deny"),
            ("cilium", "CiliumNetworkPolicy", "egress-guard-profile-stripe"),
            (
                "istio",
                "ServiceEntry",
                entry_name("egress-guard-profile-stripe", "api.stripe.com", [443]),
            ),
            ("istio", "Sidecar", "egress-guard-profile-stripe"),
        }
        assert all(i["namespace"] == "shop" for i in intents)
        assert item["injected"]["networkPolicies"] == [
            "egress-guard-default-deny",
            "egress-guard-profile-stripe",
        ]

    def test_check_table_names_each_kind(self, files: tuple[Path, Path]) -> None:
        config, manifest = files
        args = ["check", "--config", str(config), "-f", str(manifest), "-n", "shop"]
        outcome = CliRunner().invoke(main, [*args, "--mode", "enforce"])
        assert "cnp: egress-guard-default-deny, egress-guard-profile-stripe" in outcome.stdout
        assert "se: egress-guard-profile-stripe" in outcome.stdout
        assert "sidecar: egress-guard-profile-stripe" in outcome.stdout

    def test_render_follows_the_file_s_backends(self, files: tuple[Path, Path]) -> None:
        config, _ = files
        args = ["render", "--config", str(config), "-n", "shop", "--profile", "stripe"]
        outcome = CliRunner().invoke(main, args)
        assert outcome.exit_code == 0, outcome.output
        kinds = [d["kind"] for d in yaml.safe_load_all(outcome.stdout) if d]
        assert kinds.count("CiliumNetworkPolicy") == 2 and kinds.count("Sidecar") == 1
        only = CliRunner().invoke(main, [*args, "--backend", "networkpolicy"])
        kinds = [d["kind"] for d in yaml.safe_load_all(only.stdout) if d]
        assert kinds == ["NetworkPolicy", "NetworkPolicy"]
        assert "which no NetworkPolicy can express" in only.stderr


def test_readyz_says_what_is_missing_and_stays_ready(policy: Policy) -> None:
    source = FixedPolicy(policy)
    controller = AdmissionController(
        source, StaticNamespaceSource(source), ReportingNetworkPolicyApplier()
    )
    missing = "generated ciliumnetworkpolicies.cilium.io: the cluster does not serve this kind"
    app = create_app(controller, warnings=lambda: (missing,))
    reply = app.test_client().get("/readyz")
    assert reply.status_code == 200
    assert reply.get_data(as_text=True) == f"ok\nwarning: {missing}\n"
    assert create_app(controller).test_client().get("/readyz").get_data(as_text=True) == "ok\n"


def test_the_review_path_is_the_controller_s(meshed: Policy) -> None:
    """A review through the controller with static parts reports every backend's objects."""
    source = FixedPolicy(meshed)
    overrides = {"shop": labels()}
    controller = AdmissionController(
        source, StaticNamespaceSource(source, overrides=overrides), ReportingNetworkPolicyApplier()
    )
    obj = workload("Deployment", {PROFILE: "stripe"})
    result = controller.review(request(obj, namespace="shop"), Action.VALIDATE)
    assert result.decision.allowed
    (applied,) = result.applied
    assert "CiliumNetworkPolicy/egress-guard-profile-stripe" in applied.reported


class TestDoctor:
    def test_networkpolicy_needs_nothing(self, policy: Policy) -> None:
        assert check_backends(ClusterSurvey(), policy).status is Status.OK

    def test_a_missing_crd_is_a_problem_naming_it(self, meshed: Policy) -> None:
        survey = ClusterSurvey(crds=frozenset({"serviceentries.networking.istio.io"}))
        result = check_backends(survey, meshed)
        assert result.status is Status.PROBLEM
        assert "ciliumnetworkpolicies.cilium.io" in result.summary
        assert "sidecars.networking.istio.io" in result.summary
        assert "install (or upgrade) Cilium and Istio" in result.fix

    def test_installed_is_ok_and_istio_alone_a_warning(self, policy: Policy) -> None:
        crds = frozenset(
            {
                "ciliumnetworkpolicies.cilium.io",
                "serviceentries.networking.istio.io",
                "sidecars.networking.istio.io",
            }
        )
        survey = ClusterSurvey(crds=crds)
        assert check_backends(survey, policy_with(policy, backends=ALL_THREE)).status is Status.OK
        alone = check_backends(survey, policy_with(policy, backends=["istio"]))
        assert alone.status is Status.WARNING and "bypass" in alone.summary

    def test_unreadable_crds_are_unknown(self, meshed: Policy) -> None:
        survey = ClusterSurvey(unreadable={"customresourcedefinitions": "403 Forbidden"})
        assert check_backends(survey, meshed).status is Status.UNKNOWN


def test_istio_alone_is_advice_when_the_file_is_loaded(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text("backends: [istio]\nprofiles:\n  none: {}\n")
    outcome = CliRunner().invoke(main, ["render", "--config", str(config), "-n", "shop"])
    assert outcome.exit_code == 0, outcome.output
    assert "istio alone holds pods only through their sidecars" in outcome.stderr
    config.write_text("backends: [istio, cilium]\nprofiles:\n  none: {}\n")
    outcome = CliRunner().invoke(main, ["render", "--config", str(config), "-n", "shop"])
    assert "istio alone" not in outcome.stderr


class TestReviewMends:
    def test_cilium_dns_and_node_local_addresses_are_two_rules(self, meshed: Policy) -> None:
        """The Cilium agent refuses a rule that combines toEndpoints with toCIDRSet."""
        cached = policy_with(meshed, dns={"cidrs": ["169.254.20.10"]})
        context = namespace_context("shop", labels("cilium"), cached)
        (intent,) = egress_intents("shop", context, cached, "stripe")
        for manifest in intent.manifests:
            for rule in manifest["spec"]["egress"]:
                peers = {"toEndpoints", "toCIDRSet", "toFQDNs", "toCIDR", "toEntities"}
                assert len(peers & set(rule)) == 1, rule
        deny = intent.manifests[0]["spec"]["egress"]
        assert deny[1]["toCIDRSet"] == [{"cidr": "169.254.20.10/32"}]
        assert deny[1]["toPorts"] == deny[0]["toPorts"]  # through the DNS proxy as well

    def test_with_istio_the_default_denies_let_sidecars_reach_the_control_plane(
        self, meshed: Policy
    ) -> None:
        def deny_rules(value: str) -> dict[str, Any]:
            context = namespace_context("shop", labels(value), meshed)
            (intent,) = egress_intents("shop", context, meshed, None)
            return {m["kind"]: m["spec"]["egress"] for m in intent.manifests}

        meshed_rules = deny_rules("networkpolicy_cilium_istio")
        assert {"port": 15012, "protocol": "TCP"} in meshed_rules["NetworkPolicy"][-1]["ports"]
        assert meshed_rules["NetworkPolicy"][-1]["to"][0]["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "istio-system"}
        }
        cilium = meshed_rules["CiliumNetworkPolicy"][-1]
        assert cilium["toEndpoints"][0]["matchLabels"]["k8s:app"] == "istiod"
        plain = deny_rules("networkpolicy_cilium")
        assert "15012" not in str(plain) and len(plain["NetworkPolicy"]) == 1

    def test_a_cilium_policy_repointed_at_every_pod_is_refused(self, meshed: Policy) -> None:
        from builders import network_policy_request

        from webhook.core.network_policy_review import review_network_policy

        old = {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "legacy", "namespace": "shop"},
            "spec": {
                "endpointSelector": {"matchLabels": {"app": "legacy"}},
                "egress": [{"toEntities": ["world"]}],
            },
        }
        new = {**old, "spec": {**old["spec"], "endpointSelector": {}}}

        def cnp_request(new_obj: Any) -> Any:
            found = network_policy_request("UPDATE", new_obj, old, namespace="shop")
            return replace(found, kind="CiliumNetworkPolicy", group="cilium.io", version="v2")

        plain = policy_with(meshed, backends=["networkpolicy"])  # reviewed under any backend
        for each in (meshed, plain):
            assert not review_network_policy(cnp_request(new), labels(), each, frozenset()).allowed
            relabelled = {**old, "metadata": {**old["metadata"], "labels": {"a": "b"}}}
            assert review_network_policy(
                cnp_request(relabelled), labels(), each, frozenset()
            ).allowed


def test_doctor_says_a_crd_too_old_to_serve_the_version(meshed: Policy) -> None:
    """Istio before 1.22 installs the CRDs without serving v1: admission is refused there."""
    names = {
        "ciliumnetworkpolicies.cilium.io": frozenset({"v2"}),
        "serviceentries.networking.istio.io": frozenset({"v1alpha3", "v1beta1"}),
        "sidecars.networking.istio.io": frozenset({"v1alpha3", "v1beta1"}),
    }
    survey = ClusterSurvey(crds=frozenset(names), crd_versions=names)
    result = check_backends(survey, meshed)
    assert result.status is Status.PROBLEM
    assert "serviceentries.networking.istio.io v1" in result.summary
    assert "cilium" not in result.summary.split("backends")[-1].split(":")[1]
    assert any("serving v1alpha3, v1beta1, NOT v1" in line for line in result.details)


@pytest.mark.parametrize(
    ("host", "poses"),
    [
        ("exfil.shop.svc.cluster.local", True),
        ("EXFIL.shop.SVC.cluster.local.", True),
        ("*.cluster.local", True),
        ("*.local", True),
        ("*", True),
        ("*.svc.cluster.local", True),
        ("api.example.com", False),
        ("*.example.com", False),
        ("cluster.local.example.com", False),
        ("x.svc.corp.example", False),
    ],
)
def test_a_service_entry_posing_as_a_service(host: str, poses: bool) -> None:
    from webhook.core.network_policy_review import _poses

    assert _poses(host, "cluster.local") is poses


def test_istio_says_two_hosts_on_one_port_cannot_both_be_reached(policy: Policy) -> None:
    from webhook.core import istio_objects

    allow = [
        {"host": "db1.example.com", "ports": [5432]},
        {"host": "db2.example.com", "ports": [5432]},
        {"host": "api.example.com", "ports": [443]},
        {"host": "web.example.com", "ports": [443]},
    ]
    shared = policy_with(policy, profiles={"p": {"allow": allow}})
    rendered = istio_objects.render_profile("shop", "p", shared)
    assert rendered.unrendered == (
        "db1.example.com, db2.example.com on port 5432, of which Istio's sidecar reaches only one",
    )  # 443 is told apart by server name


def test_an_update_keeping_a_posing_entry_s_hosts_may_pass(meshed: Policy) -> None:
    """As for the other kinds: a ServiceEntry made before the namespace enforced can still be
    relabelled or finalized; adding a posing host to it cannot."""
    from builders import network_policy_request

    from webhook.core.network_policy_review import review_network_policy

    old = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "legacy", "namespace": "shop"},
        "spec": {"hosts": ["db.shop.svc.cluster.local"]},
    }

    def allowed(new: dict[str, Any]) -> bool:
        found = network_policy_request("UPDATE", new, old, namespace="shop")
        entry = replace(found, kind="ServiceEntry", group="networking.istio.io", version="v1")
        return review_network_policy(entry, labels(), meshed, frozenset()).allowed

    assert allowed({**old, "metadata": {**old["metadata"], "finalizers": []}})
    assert not allowed(
        {**old, "spec": {"hosts": [*old["spec"]["hosts"], "x.shop.svc.cluster.local"]}}
    )
