"""The promise "a workload reaches only what its profile declares", tried as a tenant with the
built-in `edit` role would try to get around it: pods outside NetworkPolicy's reach, relabelled
Pods, crafted reviews, their own NetworkPolicies, edits to the generated ones, loosening their
namespace. Each rule in the core, with the attempt that must fail and the case that must pass.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from builders import (
    INJECT,
    MODE,
    PROFILE,
    container,
    network_policy_request,
    ns_labels,
    pod,
    pod_spec,
    policy_with,
    workload,
)
from builders import request as make_request

from webhook.admission.controller import AdmissionController
from webhook.admission.review import parse_review
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import FixedPolicy
from webhook.core.decision import Decision, Note, Verdict
from webhook.core.egress_coverage import selected_profiles
from webhook.core.evaluate import Action, mutate, validate
from webhook.core.findings import Severity, Subject
from webhook.core.kube_names import own_users
from webhook.core.namespace_governance import review_namespace_change
from webhook.core.network_policies import render_default_deny, render_profile
from webhook.core.network_policy_review import is_network_policy, review_network_policy
from webhook.core.policy import Mode, Policy
from webhook.core.policy_advice import policy_advice
from webhook.core.request import AdmissionRequest

TENANT = "alice"
TENANT_GROUPS = ("system:authenticated", "team-a")
OWN = own_users("egress-guard", "egress-guard")
WEBHOOK_USER = "system:serviceaccount:egress-guard:egress-guard"
RECONCILER_USER = "system:serviceaccount:egress-guard:egress-guard-reconciler"


@pytest.fixture(scope="module")
def agents(policy: Policy) -> Policy:
    """The example policy with a profile for node agents."""
    profiles = policy.model_dump(by_alias=True)["profiles"]
    agent = {"hostNetwork": True, "secondaryNetworks": True, "namespaces": ["payments"]}
    return policy_with(policy, profiles={**profiles, "node-agent": agent})


def checks(decision: Decision) -> list[str]:
    return [f.check for f in decision.violations]


# --- pods outside NetworkPolicy's reach ------------------------------------------------------


def host_network(labels: dict[str, str]) -> dict[str, Any]:
    obj = workload("DaemonSet", labels, name="agent")
    obj["spec"]["template"]["spec"]["hostNetwork"] = True
    return obj


def multus(labels: dict[str, str], networks: str = "macvlan-conf") -> dict[str, Any]:
    obj = workload("Deployment", labels, name="router")
    obj["spec"]["template"]["metadata"]["annotations"] = {"k8s.v1.cni.cncf.io/networks": networks}
    return obj


class TestOutsideNetworkPolicy:
    @pytest.mark.parametrize(
        ("make", "check"), [(host_network, "host-network"), (multus, "secondary-networks")]
    )
    def test_enforce_refuses_unless_the_profile_says_so(
        self, agents: Policy, make: Any, check: str
    ) -> None:
        refused = validate(make_request(make({PROFILE: "none"})), ns_labels(), agents)
        assert refused.verdict is Verdict.DENIED
        assert checks(refused) == [check]
        assert "profile with" in refused.message, "the message names the way out"
        allowed = validate(make_request(make({PROFILE: "node-agent"})), ns_labels(), agents)
        assert allowed.verdict is Verdict.ALLOWED

    @pytest.mark.parametrize("make", [host_network, multus])
    @pytest.mark.parametrize(
        ("mode", "verdict"), [("warn", Verdict.WARNED), ("audit", Verdict.AUDITED)]
    )
    def test_preview_modes_admit_with_the_violation(
        self, policy: Policy, make: Any, mode: str, verdict: Verdict
    ) -> None:
        decision = validate(
            make_request(make({PROFILE: "none"})), ns_labels(mode, "networkpolicy"), policy
        )
        assert decision.verdict is verdict

    def test_an_empty_networks_annotation_asks_for_nothing(self, policy: Policy) -> None:
        decision = validate(make_request(multus({PROFILE: "none"}, "")), ns_labels(), policy)
        assert decision.verdict is Verdict.ALLOWED

    def test_a_host_network_workload_admitted_before_stays_updatable(self, policy: Policy) -> None:
        old = host_network({PROFILE: "none"})
        new = copy.deepcopy(old)
        new["spec"]["template"]["metadata"]["labels"]["tier"] = "node"
        decision = validate(make_request(new, operation="UPDATE", old=old), ns_labels(), policy)
        assert decision.allowed and decision.preexisting

    def test_turning_host_network_on_in_an_update_is_refused(self, policy: Policy) -> None:
        old = workload("DaemonSet", {PROFILE: "none"}, name="agent")
        new = host_network({PROFILE: "none"})
        decision = validate(make_request(new, operation="UPDATE", old=old), ns_labels(), policy)
        assert checks(decision) == ["host-network"]


class TestProxyRoute:
    def test_a_profile_that_allows_nothing_gets_no_route_to_the_proxy(self, policy: Policy) -> None:
        spec = render_profile("shop", "none", policy, namespace_injects_all=True)["spec"]
        assert "egress" not in spec
        assert not mutate(
            make_request(pod({PROFILE: "none"})), ns_labels("enforce", "all"), policy
        ).patch

    def test_profiles_that_use_the_proxy_reach_it_and_get_its_variables(
        self, policy: Policy
    ) -> None:
        for profile in ("stripe", "web-via-proxy"):
            spec = render_profile("shop", profile, policy, namespace_injects_all=True)["spec"]
            assert spec["egress"][-1]["ports"] == [{"protocol": "TCP", "port": 3128}]
            labels = ns_labels("enforce", "all")
            assert mutate(make_request(pod({PROFILE: profile})), labels, policy).patch


# --- profiles changed behind the owner's back ------------------------------------------------


def owned_pod(profile: str | None, *, controller: bool = True) -> dict[str, Any]:
    obj = pod({PROFILE: profile} if profile else {"app": "web"})
    obj["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-5d4f",
            "uid": "3b0e2b8e-0000-4000-8000-000000000001",
            "controller": controller,
        }
    ]
    return obj


class TestOwnedPodRelabel:
    @pytest.mark.parametrize("sub_resource", ["", "status"])
    def test_a_controllers_pod_keeps_its_profile(self, policy: Policy, sub_resource: str) -> None:
        req = make_request(
            owned_pod("stripe"),
            operation="UPDATE",
            old=owned_pod("none"),
            sub_resource=sub_resource,
        )
        decision = validate(req, ns_labels(), policy)
        assert decision.verdict is Verdict.DENIED
        assert checks(decision) == ["pod-profile-change"]
        assert "ReplicaSet 'web-5d4f'" in decision.message

    def test_warn_mode_warns(self, policy: Policy) -> None:
        req = make_request(owned_pod("stripe"), operation="UPDATE", old=owned_pod("none"))
        assert validate(req, ns_labels("warn"), policy).verdict is Verdict.WARNED

    def test_giving_a_profile_to_an_owned_pod_without_one_is_refused_too(
        self, policy: Policy
    ) -> None:
        req = make_request(owned_pod("stripe"), operation="UPDATE", old=owned_pod(None))
        assert checks(validate(req, ns_labels(), policy)) == ["pod-profile-change"]

    def test_a_pod_without_an_owner_keeps_its_profile_too(self, policy: Policy) -> None:
        """Or orphaning a controller's Pod (never sent: its labels stay) and relabelling it
        would get around the rule."""
        for old in (pod({PROFILE: "none"}), owned_pod("none", controller=False)):
            new = copy.deepcopy(old)
            new["metadata"]["labels"][PROFILE] = "stripe"
            req = make_request(new, operation="UPDATE", old=old)
            decision = validate(req, ns_labels(), policy)
            assert checks(decision) == ["pod-profile-change"]
            assert "create a new Pod" in decision.message

    def test_a_pod_being_deleted_keeps_its_profile(self, policy: Policy) -> None:
        """It may run on for its grace period."""
        new, old = owned_pod("stripe"), owned_pod("none")
        new["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        req = make_request(new, operation="UPDATE", old=old)
        assert checks(validate(req, ns_labels(), policy)) == ["pod-profile-change"]
        unchanged = make_request(new, operation="UPDATE", old=owned_pod("stripe"))
        assert validate(unchanged, ns_labels(), policy).allowed

    def test_a_deployment_may_change_its_profile(self, policy: Policy) -> None:
        req = make_request(
            workload("Deployment", {PROFILE: "stripe"}),
            operation="UPDATE",
            old=workload("Deployment", {PROFILE: "none"}),
        )
        decision = validate(req, ns_labels(), policy)
        assert decision.verdict is Verdict.ALLOWED
        assert decision.intents, "the new profile's policy is ensured"

    def test_other_label_changes_are_fine(self, policy: Policy) -> None:
        new = owned_pod("none")
        new["metadata"]["labels"]["version"] = "2"
        req = make_request(new, operation="UPDATE", old=owned_pod("none"))
        assert validate(req, ns_labels(), policy).verdict is Verdict.ALLOWED


class TestMalformedObject:
    @pytest.mark.parametrize("body", ["null", "[1, 2]", '"a string"'])
    def test_enforce_never_admits_a_workload_review_without_an_object(
        self, policy: Policy, body: str
    ) -> None:
        text = (
            '{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": '
            '{"uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"}, '
            '"namespace": "payments", "operation": "CREATE", "object": ' + body + "}}"
        )
        req = parse_review(text.encode()).request
        decision = validate(req, ns_labels(), policy)
        assert decision.verdict is Verdict.DENIED
        assert checks(decision) == ["malformed-object"]
        assert validate(req, ns_labels("warn"), policy).verdict is Verdict.WARNED
        assert validate(req, None, policy).verdict is Verdict.ALLOWED, "not managed"

    def test_a_kind_that_is_no_workload_is_still_let_through(self, policy: Policy) -> None:
        req = AdmissionRequest(uid="u", kind="ConfigMap", operation="CREATE", namespace="payments")
        assert validate(req, ns_labels(), policy).allowed

    def test_the_controller_looks_the_namespace_up_for_it(self, policy: Policy) -> None:
        controller = controller_for(policy)
        req = AdmissionRequest(
            uid="u", kind="Pod", operation="CREATE", namespace="payments", object=None
        )
        assert controller.review(req, Action.VALIDATE).decision.verdict is Verdict.DENIED
        assert controller.review(req, Action.MUTATE).decision.allowed, "mutation fails open"


# --- tenants' own NetworkPolicies ------------------------------------------------------------


def network_policy(
    spec: dict[str, Any], *, name: str = "mine", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "payments"}
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": spec,
    }


def np_request(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    user: str = TENANT,
    groups: tuple[str, ...] = TENANT_GROUPS,
) -> AdmissionRequest:
    return network_policy_request(operation, obj, old, user=user, groups=groups)


def egress(*rules: dict[str, Any], selector: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"podSelector": selector or {}, "policyTypes": ["Egress"], "egress": list(rules)}


STRIPE_ONLY = {"matchLabels": {PROFILE: "stripe"}}
STRIPE_RANGE = {"to": [{"ipBlock": {"cidr": "34.210.129.0/24"}}], "ports": [{"port": 443}]}


ENFORCING = ns_labels()


def np_verdict(
    policy: Policy, req: AdmissionRequest, labels: dict[str, str] | None = ENFORCING
) -> Verdict:
    return review_network_policy(req, labels, policy, OWN).verdict


class TestForeignNetworkPolicies:
    @pytest.mark.parametrize(
        "spec",
        [
            pytest.param({"podSelector": {}, "ingress": [{}]}, id="ingress-only"),
            pytest.param(
                {"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{}]},
                id="egress-not-governed",
            ),
            pytest.param({"podSelector": {}, "policyTypes": ["Egress"]}, id="deny-all-egress"),
            pytest.param(egress(STRIPE_RANGE, selector=STRIPE_ONLY), id="within-the-profile"),
            pytest.param(
                egress(
                    {
                        "to": [{"ipBlock": {"cidr": "34.210.129.128/25"}}],
                        "ports": [{"port": 443, "protocol": "TCP"}],
                    },
                    selector=STRIPE_ONLY,
                ),
                id="narrower-block",
            ),
            pytest.param(
                egress(
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                },
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"port": 53, "protocol": "UDP"}],
                    }
                ),
                id="dns-for-everyone",
            ),
            pytest.param(
                egress(
                    {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"team": "payments", "tier": "db"}
                                },
                                "podSelector": {"matchLabels": {"app": "ledger"}},
                            }
                        ],
                        "ports": [{"port": 8080}],
                    },
                    selector={"matchLabels": {PROFILE: "internal"}},
                ),
                id="narrower-selector",
            ),
        ],
    )
    def test_what_widens_nothing_is_allowed(self, policy: Policy, spec: dict[str, Any]) -> None:
        assert np_verdict(policy, np_request(network_policy(spec))) is Verdict.ALLOWED

    @pytest.mark.parametrize(
        "spec",
        [
            pytest.param(egress({}), id="everything-for-everyone"),
            pytest.param(
                egress({"ports": [{"port": 443}]}, selector=STRIPE_ONLY), id="any-address"
            ),
            pytest.param(
                egress(
                    {"to": [{"ipBlock": {"cidr": "34.210.0.0/16"}}], "ports": [{"port": 443}]},
                    selector=STRIPE_ONLY,
                ),
                id="wider-block",
            ),
            pytest.param(
                egress(
                    {"to": [{"ipBlock": {"cidr": "34.210.129.0/24"}}], "ports": [{"port": 22}]},
                    selector=STRIPE_ONLY,
                ),
                id="other-port",
            ),
            pytest.param(
                egress({"to": [{"ipBlock": {"cidr": "34.210.129.0/24"}}]}, selector=STRIPE_ONLY),
                id="every-port",
            ),
            pytest.param(egress(STRIPE_RANGE), id="stripe-range-for-every-profile"),
            pytest.param(
                egress(
                    STRIPE_RANGE,
                    selector={
                        "matchExpressions": [
                            {"key": PROFILE, "operator": "In", "values": ["stripe", "none"]}
                        ]
                    },
                ),
                id="in-expression-with-a-narrower-profile",
            ),
            pytest.param(
                egress(
                    STRIPE_RANGE,
                    selector={
                        "matchExpressions": [
                            {"key": PROFILE, "operator": "NotIn", "values": ["none"]}
                        ]
                    },
                ),
                id="notin-expression-selects-unknown-pods",
            ),
            pytest.param(
                egress(
                    {"to": [{"namespaceSelector": {}}]},
                    selector={"matchLabels": {PROFILE: "internal"}},
                ),
                id="every-namespace",
            ),
            pytest.param(egress("not a rule"), id="unreadable-rule"),  # type: ignore[arg-type]
        ],
    )
    def test_what_widens_egress_is_refused_under_enforce(
        self, policy: Policy, spec: dict[str, Any]
    ) -> None:
        decision = review_network_policy(np_request(network_policy(spec)), ns_labels(), policy, OWN)
        assert decision.verdict is Verdict.DENIED
        assert checks(decision) == ["foreign-network-policy"]
        assert decision.violations[0].get("rule") == 0

    def test_the_namespaces_mode_and_the_policy_file_decide(self, policy: Policy) -> None:
        req = np_request(network_policy(egress({})))
        assert np_verdict(policy, req, ns_labels("warn", "networkpolicy")) is Verdict.WARNED
        assert np_verdict(policy, req, ns_labels("audit", "networkpolicy")) is Verdict.AUDITED
        assert np_verdict(policy, req, ns_labels("enforce", "none")) is Verdict.ALLOWED
        assert np_verdict(policy, req, None) is Verdict.ALLOWED
        warn = policy_with(policy, governance={"foreignNetworkPolicies": "warn"})
        assert np_verdict(warn, req) is Verdict.WARNED
        open_ = policy_with(policy, governance={"foreignNetworkPolicies": "allow"})
        assert np_verdict(open_, req) is Verdict.ALLOWED

    def test_updates_are_checked_and_deletes_are_not(self, policy: Policy) -> None:
        fine = network_policy(egress(STRIPE_RANGE, selector=STRIPE_ONLY))
        wide = network_policy(egress({}))
        assert np_verdict(policy, np_request(wide, operation="UPDATE", old=fine)) is Verdict.DENIED
        assert np_verdict(policy, np_request(None, operation="DELETE", old=wide)) is Verdict.ALLOWED

    def test_the_profile_that_is_selected_counts(self, policy: Policy) -> None:
        assert selected_profiles(STRIPE_ONLY, policy) == ("stripe",)
        everyone = selected_profiles({"matchLabels": {"app": "web"}}, policy)
        assert set(everyone) == {*policy.profile_names, None}


class TestGeneratedNetworkPolicies:
    def generated(self, policy: Policy) -> dict[str, Any]:
        return render_default_deny("payments", policy)

    @pytest.mark.parametrize("mode", ["enforce", "warn", "audit"])
    def test_a_tenant_may_not_change_or_delete_them_in_any_managed_namespace(
        self, policy: Policy, mode: str
    ) -> None:
        old = self.generated(policy)
        opened = copy.deepcopy(old)
        opened["spec"]["egress"].append({})
        unlabelled = copy.deepcopy(old)
        del unlabelled["metadata"]["labels"]["app.kubernetes.io/managed-by"]
        labels = ns_labels(mode, "networkpolicy")
        for req in (
            np_request(opened, operation="UPDATE", old=old),
            np_request(unlabelled, operation="UPDATE", old=old),
            np_request(None, operation="DELETE", old=old),
            np_request(old),  # a policy that passes for a generated one
        ):
            decision = review_network_policy(req, labels, policy, OWN)
            assert decision.verdict is Verdict.DENIED, req.operation
            assert checks(decision) == ["generated-network-policy"]

    def test_egress_guard_and_the_named_editors_may(self, policy: Policy) -> None:
        old = self.generated(policy)
        for user in (WEBHOOK_USER, RECONCILER_USER):
            req = np_request(None, operation="DELETE", old=old, user=user, groups=())
            assert np_verdict(policy, req) is Verdict.ALLOWED
        editors = policy_with(policy, governance={"networkPolicyEditors": {"groups": ["platform"]}})
        req = np_request(None, operation="DELETE", old=old, groups=("platform",))
        assert np_verdict(editors, req) is Verdict.ALLOWED
        assert np_verdict(policy, req) is Verdict.DENIED

    def test_a_namespace_being_deleted_can_be_emptied(self, policy: Policy) -> None:
        old = self.generated(policy)
        cleanup = np_request(
            None,
            operation="DELETE",
            old=old,
            user="system:serviceaccount:kube-system:namespace-controller",
        )
        assert np_verdict(policy, cleanup) is Verdict.ALLOWED
        update = replace(cleanup, operation="UPDATE", object=old)
        assert np_verdict(policy, update) is Verdict.DENIED, "only its deletes"

    def test_exempt_namespaces_are_never_touched(self, policy: Policy) -> None:
        req = replace(np_request(self.generated(policy)), namespace="kube-system")
        assert np_verdict(policy, req) is Verdict.ALLOWED


# --- who may loosen a namespace --------------------------------------------------------------


def namespace_update(
    old: dict[str, str],
    new: dict[str, str],
    *,
    user: str = TENANT,
    groups: tuple[str, ...] = TENANT_GROUPS,
) -> AdmissionRequest:
    def obj(labels: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "payments", "labels": labels},
        }

    return AdmissionRequest(
        uid="u",
        kind="Namespace",
        version="v1",
        operation="UPDATE",
        name="payments",
        object=obj(new),
        old_object=obj(old),
        user=user,
        groups=groups,
    )


GOVERNED = {"loosenNamespaces": {"groups": ["platform"], "users": ["root"]}}


class TestNamespaceLoosening:
    @pytest.mark.parametrize(
        ("old", "new"),
        [
            pytest.param(ns_labels("enforce"), ns_labels("warn"), id="enforce-to-warn"),
            pytest.param(ns_labels("warn"), ns_labels("audit"), id="warn-to-audit"),
            pytest.param(ns_labels("enforce"), {}, id="mode-removed"),
            pytest.param(ns_labels("enforce"), ns_labels("enforce", "none"), id="inject-none"),
            pytest.param(
                ns_labels("enforce", "all"), ns_labels("enforce", "proxy"), id="all-to-proxy"
            ),
            pytest.param({MODE: "enforse"}, ns_labels("audit"), id="a-typo-counts-as-enforce"),
        ],
    )
    def test_only_the_named_may_loosen(
        self, policy: Policy, old: dict[str, str], new: dict[str, str]
    ) -> None:
        governed = policy_with(policy, governance=GOVERNED)
        refused = review_namespace_change(namespace_update(old, new), governed)
        assert refused is not None and refused.verdict is Verdict.DENIED
        assert checks(refused) == ["namespace-loosening"]
        assert "group platform" in refused.message
        for who in ({"groups": ("platform",)}, {"user": "root"}):
            assert review_namespace_change(namespace_update(old, new, **who), governed) is None  # type: ignore[arg-type]
        assert review_namespace_change(namespace_update(old, new), policy) is None, "ungoverned"

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            pytest.param(ns_labels("warn"), ns_labels("enforce"), id="tighten"),
            pytest.param({}, ns_labels("audit"), id="opt-in"),
            pytest.param(
                ns_labels("enforce"), {**ns_labels("enforce"), "team": "a"}, id="other-label"
            ),
            pytest.param(ns_labels("enforce"), ns_labels("enforce", "all"), id="inject-all"),
        ],
    )
    def test_tightening_is_anyones(
        self, policy: Policy, old: dict[str, str], new: dict[str, str]
    ) -> None:
        governed = policy_with(policy, governance=GOVERNED)
        assert review_namespace_change(namespace_update(old, new), governed) is None

    def test_the_controller_refuses_before_previewing(self, policy: Policy) -> None:
        governed = policy_with(policy, governance=GOVERNED)
        result = controller_for(governed).review(
            namespace_update(ns_labels("enforce"), ns_labels("warn")), Action.VALIDATE
        )
        assert result.decision.verdict is Verdict.DENIED


# --- quieter holes ---------------------------------------------------------------------------


class TestEnvFrom:
    @pytest.mark.parametrize(
        ("env_from", "warned"),
        [
            ([{"configMapRef": {"name": "settings"}}], True),
            ([{"secretRef": {"name": "creds"}, "prefix": "HTTP"}], True),
            ([{"configMapRef": {"name": "settings"}, "prefix": "APP_"}], False),
            ([], False),
        ],
    )
    def test_a_proxy_variable_from_env_from_would_be_overridden(
        self, policy: Policy, env_from: list[Any], warned: bool
    ) -> None:
        obj = pod({PROFILE: "web-via-proxy"}, spec=pod_spec(container(envFrom=env_from)))
        decision = mutate(make_request(obj), ns_labels(), policy)
        assert decision.patch
        found = [f for f in decision.findings if f.get("problem") == "env-from"]
        assert bool(found) is warned
        if warned:
            (said,) = decision.warnings
            assert "envFrom" in said and "override" in said and len(said) <= 120


class TestOpenNetworkAdvice:
    def profiles(self, policy: Policy, **destination: Any) -> Policy:
        profiles = policy.model_dump(by_alias=True)["profiles"]
        return policy_with(policy, profiles={**profiles, "world": {"allow": [destination]}})

    def test_the_whole_internet_without_excepts_is_advised_against(self, policy: Policy) -> None:
        (finding,) = policy_advice(self.profiles(policy, cidr="0.0.0.0/0"))
        assert set(finding.get("unexcepted")) == {  # type: ignore[arg-type]
            "169.254.169.254/32",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
        }
        (v6,) = policy_advice(self.profiles(policy, cidr="::/0"))
        assert set(v6.get("unexcepted")) == {"fd00:ec2::254/128", "fc00::/7"}  # type: ignore[arg-type]

    def test_excepting_them_or_naming_the_cluster_ranges_settles_it(self, policy: Policy) -> None:
        excepted = self.profiles(
            policy,
            cidr="0.0.0.0/0",
            **{"except": ["169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]},
        )
        assert policy_advice(excepted) == ()
        cluster = policy_with(
            self.profiles(
                policy, cidr="0.0.0.0/0", **{"except": ["169.254.169.254/32", "10.0.0.0/8"]}
            ),
            clusterNetworks=["10.0.0.0/8"],
        )
        assert policy_advice(cluster) == ()

    def test_a_narrow_range_holding_the_metadata_address_is_advised_against(
        self, policy: Policy
    ) -> None:
        (finding,) = policy_advice(self.profiles(policy, cidr="169.254.0.0/16"))
        assert finding.get("unexcepted") == ("169.254.169.254/32",)
        assert policy_advice(self.profiles(policy, cidr="34.210.129.0/24")) == ()


class TestLabelsOnly:
    @pytest.mark.parametrize("inject", ["none", "proxy"])
    def test_an_enforcing_namespace_without_network_policies_says_so(
        self, policy: Policy, inject: str
    ) -> None:
        decision = validate(
            make_request(workload("Deployment", {PROFILE: "none"})),
            ns_labels("enforce", inject),
            policy,
        )
        assert decision.verdict is Verdict.ALLOWED
        assert [f.check for f in decision.findings] == ["not-network-enforced"]
        assert any("enforces labels only" in w for w in decision.warnings)

    def test_each_namespace_is_told_its_own_inject(self, policy: Policy) -> None:
        """The note is memoised per namespace and inject, never shared between them."""
        for namespace, inject in (("payments", "none"), ("shop", "proxy"), ("shop", "none")):
            req = replace(
                make_request(workload("Deployment", {PROFILE: "none"})), namespace=namespace
            )
            (note,) = validate(req, ns_labels("enforce", inject), policy).findings
            assert note.details() == {"namespace": namespace, "inject": inject}

    def test_nothing_is_said_where_network_policies_enforce(self, policy: Policy) -> None:
        decision = validate(
            make_request(workload("Deployment", {PROFILE: "none"})), ns_labels(), policy
        )
        assert decision.findings == ()


def controller_for(policy: Policy) -> AdmissionController:
    policies = FixedPolicy(policy)
    return AdmissionController(
        policies=policies,
        namespaces=StaticNamespaceSource(
            policies, default={MODE: "enforce", INJECT: "networkpolicy"}
        ),
        network_policies=ReportingNetworkPolicyApplier(),
        own_users=OWN,
    )


class TestReviewFindings:
    """What an independent review of these rules found, each pinned."""

    def test_a_node_agents_profile_lets_pods_escape_only_where_it_says(
        self, agents: Policy
    ) -> None:
        in_tenant = replace(make_request(host_network({PROFILE: "node-agent"})), namespace="shop")
        assert checks(validate(in_tenant, ns_labels(), agents)) == ["host-network"]
        assert validate(
            make_request(host_network({PROFILE: "node-agent"})), ns_labels(), agents
        ).allowed

    def test_a_profile_that_escapes_must_name_its_namespaces(self, policy: Policy) -> None:
        profiles = policy.model_dump(by_alias=True)["profiles"]
        with pytest.raises(ValueError, match="list the namespaces"):
            policy_with(policy, profiles={**profiles, "agent": {"hostNetwork": True}})

    def test_multus_replacing_the_default_network_counts_too(self, policy: Policy) -> None:
        obj = workload("Deployment", {PROFILE: "none"}, name="router")
        obj["spec"]["template"]["metadata"]["annotations"] = {
            "v1.multus-cni.io/default-network": "macvlan"
        }
        assert checks(validate(make_request(obj), ns_labels(), policy)) == ["secondary-networks"]

    def test_a_policy_that_already_widened_may_be_narrowed_not_widened(
        self, policy: Policy
    ) -> None:
        wide = network_policy(egress({"ports": [{"port": 443}]}))
        relabelled = copy.deepcopy(wide)
        relabelled["metadata"]["labels"] = {"team": "a"}
        assert np_verdict(policy, np_request(relabelled, operation="UPDATE", old=wide)) is (
            Verdict.ALLOWED
        )
        narrowed = network_policy(egress(STRIPE_RANGE, selector=STRIPE_ONLY))
        assert np_verdict(policy, np_request(narrowed, operation="UPDATE", old=wide)) is (
            Verdict.ALLOWED
        )
        wider = network_policy(egress({"ports": [{"port": 443}]}, {"ports": [{"port": 22}]}))
        assert np_verdict(policy, np_request(wider, operation="UPDATE", old=wide)) is (
            Verdict.DENIED
        )

    def test_a_policy_being_deleted_may_lose_its_finalizers(self, policy: Policy) -> None:
        wide = network_policy(egress({}))
        wide["metadata"]["finalizers"] = ["example.com/hold"]
        finalized = copy.deepcopy(wide)
        finalized["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        del finalized["metadata"]["finalizers"]
        req = np_request(finalized, operation="UPDATE", old=wide)
        assert np_verdict(policy, req) is Verdict.ALLOWED

    def test_ip_families_mixed_in_excepts_are_read_not_crashed_on(self, policy: Policy) -> None:
        mixed = network_policy(
            egress(
                {"to": [{"ipBlock": {"cidr": "34.210.129.0/24", "except": ["::1/128"]}}]},
                selector=STRIPE_ONLY,
            )
        )
        assert np_verdict(policy, np_request(mixed)) is Verdict.DENIED, "every port: wider"

    def test_a_subresource_of_a_network_policy_is_not_checked(self, policy: Policy) -> None:
        req = replace(np_request(network_policy(egress({}))), sub_resource="status")
        decision = review_network_policy(req, ns_labels(), policy, OWN)
        assert decision.allowed and decision.note is Note.SUBRESOURCE_NOT_CHECKED

    @pytest.mark.parametrize("sub_resource", ["status", "finalize"])
    def test_a_namespaces_labels_through_its_subresources_are_governed(
        self, policy: Policy, sub_resource: str
    ) -> None:
        governed = policy_with(policy, governance=GOVERNED)
        req = replace(namespace_update(ns_labels("enforce"), {}), sub_resource=sub_resource)
        refused = review_namespace_change(req, governed)
        assert refused is not None and refused.verdict is Verdict.DENIED


class TestEgressCoverage:
    """The coverage rules one by one: what counts as within what egress-guard allows."""

    @staticmethod
    def covered(rule: dict[str, Any], allowed: dict[str, Any], namespace: str = "payments") -> bool:
        from webhook.core.egress_coverage import _covered, read_rule

        mine, theirs = read_rule(rule, namespace), read_rule(allowed, namespace)
        assert mine is not None and theirs is not None
        return _covered(mine, (theirs,))

    @pytest.mark.parametrize(
        ("rule", "allowed", "expected"),
        [
            pytest.param({"ports": [{"port": 443}]}, {}, True, id="anything-allows-a-port"),
            pytest.param({}, {"ports": [{"port": 443}]}, False, id="every-port-is-wider"),
            pytest.param(
                {"ports": [{"port": 443, "protocol": "UDP"}]},
                {"ports": [{"port": 443}]},
                False,
                id="protocol",
            ),
            pytest.param(
                {"ports": [{"port": 8000, "endPort": 8100}]},
                {"ports": [{"port": 8000, "endPort": 9000}]},
                True,
                id="range-inside",
            ),
            pytest.param(
                {"ports": [{"port": 7999, "endPort": 8100}]},
                {"ports": [{"port": 8000, "endPort": 9000}]},
                False,
                id="range-starts-before",
            ),
            pytest.param(
                {"ports": [{"port": 8000, "endPort": 9001}]},
                {"ports": [{"port": 8000, "endPort": 9000}]},
                False,
                id="range-ends-after",
            ),
            pytest.param(
                {"ports": [{"port": "https"}]},
                {"ports": [{"port": "https"}]},
                True,
                id="same-named-port",
            ),
            pytest.param(
                {"ports": [{"port": "https"}]},
                {"ports": [{"port": 443}]},
                False,
                id="named-against-number",
            ),
            pytest.param(
                {"ports": [{"protocol": "TCP"}]},
                {"ports": [{"port": 443}]},
                False,
                id="every-tcp-port",
            ),
            pytest.param(
                {"ports": [{"port": 443}]},
                {"ports": [{"protocol": "TCP"}]},
                True,
                id="within-every-tcp-port",
            ),
            pytest.param(
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]},
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/25"]}}]},
                False,
                id="holds-an-except",
            ),
            pytest.param(
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.0/25"]}}]},
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/25"]}}]},
                True,
                id="excepts-it-too",
            ),
            pytest.param(
                {"to": [{"ipBlock": {"cidr": "10.0.1.0/24"}}]},
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/25"]}}]},
                True,
                id="except-elsewhere",
            ),
            pytest.param(
                {"to": [{"ipBlock": {"cidr": "::/0"}}]},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
                False,
                id="other-family",
            ),
            pytest.param(
                {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]},
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "payments"}
                            },
                            "podSelector": {"matchLabels": {"app": "db"}},
                        }
                    ]
                },
                True,
                id="own-namespace",
            ),
            pytest.param(
                {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]},
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "other"}
                            },
                            "podSelector": {"matchLabels": {"app": "db"}},
                        }
                    ]
                },
                False,
                id="other-namespace",
            ),
            pytest.param(
                {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "db"}}}]},
                {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]},
                False,
                id="every-namespace",
            ),
            pytest.param(
                {"to": [{"podSelector": {"matchLabels": {"app": "cache"}}}]},
                {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]},
                False,
                id="other-pods",
            ),
            pytest.param(
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]},
                {"to": [{"podSelector": {}}]},
                False,
                id="block-against-pods",
            ),
            pytest.param(
                {"to": [{"podSelector": {}}]},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
                False,
                id="pods-against-block",
            ),
            pytest.param(
                {},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
                False,
                id="anywhere-against-a-block",
            ),
        ],
    )
    def test_within(self, rule: dict[str, Any], allowed: dict[str, Any], expected: bool) -> None:
        assert self.covered(rule, allowed) is expected

    @pytest.mark.parametrize(
        "rule",
        [
            {"to": "nope"},
            {"to": [{"ipBlock": "x"}]},
            {"to": [{"ipBlock": {"cidr": "not-a-network"}}]},
            {"to": [{"podSelector": "x"}]},
            {"to": [{"podSelector": {"matchExpressions": ["x"]}}]},
            {
                "to": [
                    {
                        "podSelector": {
                            "matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]
                        }
                    }
                ]
            },
            {"ports": "nope"},
            {"ports": ["x"]},
            {"ports": [{"port": True}]},
            {"ports": [{"port": 1.5}]},
            "not a rule",
        ],
    )
    def test_what_cannot_be_read_is_never_covered(self, rule: Any) -> None:
        from webhook.core.egress_coverage import read_rule

        assert read_rule(rule, "payments") is None

    def test_a_selector_that_cannot_be_read_selects_every_profile(self, policy: Policy) -> None:
        everyone = {*policy.profile_names, None}
        assert set(selected_profiles("x", policy)) == everyone
        assert set(selected_profiles({"matchLabels": "x"}, policy)) == everyone
        both = {
            "matchLabels": {PROFILE: "stripe"},
            "matchExpressions": [{"key": PROFILE, "operator": "In", "values": ["stripe", "none"]}],
        }
        assert selected_profiles(both, policy) == ("stripe",)

    def test_egress_without_policy_types_is_governed(self, policy: Policy) -> None:
        from webhook.core.egress_coverage import uncovered

        assert uncovered(
            {"podSelector": {}, "egress": [{}]}, "payments", policy, namespace_injects_all=False
        )
        assert (
            uncovered(
                {"podSelector": {}, "ingress": [{}]},
                "payments",
                policy,
                namespace_injects_all=False,
            )
            == []
        )
        assert uncovered(
            {"podSelector": {}, "policyTypes": ["Egress"], "egress": "x"},
            "payments",
            policy,
            namespace_injects_all=False,
        )


class TestFindingsSayWhatHappened:
    """The findings of the enforcement rules carry what a program reading `check -o json` or the
    decision log needs: details, subjects and the fix, pinned beside the verdicts."""

    def test_a_generated_policy_change_names_the_operation_the_user_and_the_editors(
        self, policy: Policy
    ) -> None:
        old = render_default_deny("payments", policy)
        editors = policy_with(
            policy, governance={"networkPolicyEditors": {"users": ["root"], "groups": ["ops"]}}
        )
        for operation, verb in (
            ("DELETE", "deleted"),
            ("UPDATE", "changed"),
            ("CREATE", "created"),
        ):
            new = None if operation == "DELETE" else old
            req = np_request(new, operation=operation, old=None if operation == "CREATE" else old)
            (finding,) = review_network_policy(req, ns_labels(), editors, OWN).violations
            assert f"may not be {verb} by alice" in finding.reason
            assert finding.details() == {"operation": operation, "user": "alice"}
            assert finding.hint.endswith("(editors: root, ops)")
            assert str(finding.subject) == 'NetworkPolicy "egress-guard-default-deny"'
        anonymous = replace(np_request(old), user="")
        (finding,) = review_network_policy(anonymous, ns_labels(), policy, OWN).violations
        assert "by an unknown user" in finding.reason and "editors" not in finding.hint

    def test_a_delete_is_named_from_the_old_object(self, policy: Policy) -> None:
        old = render_default_deny("payments", policy)
        req = replace(np_request(None, operation="DELETE", old=old), name="")
        (finding,) = review_network_policy(req, ns_labels(), policy, OWN).violations
        assert finding.subject is not None and finding.subject.name == "egress-guard-default-deny"
        nameless = {**old, "metadata": {**old["metadata"], "name": ""}}
        req = replace(np_request(None, operation="DELETE", old=nameless), name="")
        (finding,) = review_network_policy(req, ns_labels(), policy, OWN).violations
        assert finding.subject is not None and finding.subject.name == "<unnamed>"

    def test_a_widening_rule_names_its_index_and_profiles(self, policy: Policy) -> None:
        spec = egress(STRIPE_RANGE, {"ports": [{"port": 22}]})
        decision = review_network_policy(np_request(network_policy(spec)), ns_labels(), policy, OWN)
        first, second = decision.violations
        assert first.get("rule") == 0 and second.get("rule") == 1
        profiles = first.get("profiles")
        assert isinstance(profiles, tuple) and "(no profile)" in profiles
        assert "egress rule 1 opens" in first.reason and "more)" not in first.reason
        assert "egress rule 2 opens" in second.reason and "and 1 more" in second.reason
        assert first.short_hint == "narrow it to what their profiles allow"
        pinned = review_network_policy(
            np_request(network_policy(egress({"ports": [{"port": 22}]}, selector=STRIPE_ONLY))),
            ns_labels(),
            policy,
            OWN,
        )
        assert pinned.violations[0].get("profiles") == ("stripe",)
        assert "(stripe)" in pinned.violations[0].reason

    def test_other_operations_and_kinds_are_let_through(self, policy: Policy) -> None:
        req = replace(np_request(network_policy(egress({}))), operation="CONNECT")
        assert (
            review_network_policy(req, ns_labels(), policy, OWN).note is Note.OPERATION_NOT_CHECKED
        )
        assert review_network_policy(req, None, policy, OWN).allowed
        unmanaged = review_network_policy(np_request(network_policy(egress({}))), None, policy, OWN)
        assert unmanaged.note is Note.NOT_MANAGED
        assert not is_network_policy(
            replace(np_request(None, old={"metadata": {"name": "x"}}), group="extensions")
        )

    def test_a_relabelled_pod_says_from_what_to_what(self, policy: Policy) -> None:
        req = make_request(owned_pod("stripe"), operation="UPDATE", old=owned_pod(None))
        (finding,) = validate(req, ns_labels(), policy).violations
        assert finding.details() == {
            "owner_kind": "ReplicaSet",
            "owner": "web-5d4f",
            "label": PROFILE,
            "after": "stripe",
        }
        assert "from (none) to stripe" in finding.reason
        bare = make_request(pod({"app": "web"}), operation="UPDATE", old=pod({PROFILE: "none"}))
        finding = validate(bare, ns_labels(), policy).violations[0]
        assert finding.check == "pod-profile-change"
        assert finding.details() == {"label": PROFILE, "before": "none"}
        assert "from none to (none)" in finding.reason

    def test_an_owner_without_a_kind_or_name_is_still_named(self, policy: Policy) -> None:
        from webhook.core.owned_pods import controller_of

        assert controller_of({"metadata": {"ownerReferences": [{"controller": True}]}}) == (
            "owner",
            "",
        )
        assert (
            controller_of({"metadata": {"ownerReferences": ["x", {"controller": "yes"}]}}) is None
        )
        assert controller_of({"metadata": {"ownerReferences": "x"}}) is None

    def test_loosening_says_what_from_what_to_what(self, policy: Policy) -> None:
        governed = policy_with(policy, governance={"loosenNamespaces": {}})
        refused = review_namespace_change(
            namespace_update(ns_labels("enforce", "all"), ns_labels("enforce", "proxy")), governed
        )
        assert refused is not None
        (finding,) = refused.violations
        assert finding.details() == {
            "label": "inject",
            "before": "all",
            "after": "proxy",
            "user": TENANT,
        }
        assert "ask one of: no one" in finding.hint
        assert str(finding.subject) == 'Namespace "payments"'
        removed = review_namespace_change(namespace_update(ns_labels("warn"), {}), governed)
        assert removed is not None
        assert removed.violations[0].details()["after"] == "(removed)"

    def test_an_exempt_namespace_or_a_create_is_never_governed(self, policy: Policy) -> None:
        governed = policy_with(policy, governance=GOVERNED)
        exempt = replace(namespace_update(ns_labels("enforce"), {}), name="kube-system")
        assert review_namespace_change(exempt, governed) is None
        created = replace(namespace_update(ns_labels("enforce"), {}), operation="CREATE")
        assert review_namespace_change(created, governed) is None
        assert (
            review_namespace_change(replace(created, operation="UPDATE", old_object=None), governed)
            is None
        )

    def test_open_network_advice_carries_the_destination(self, policy: Policy) -> None:
        profiles = policy.model_dump(by_alias=True)["profiles"]
        wide = policy_with(
            policy,
            profiles={
                **profiles,
                "world": {"allow": [{"cidr": "0.0.0.0/0"}, {"cidr": "169.254.0.0/16"}]},
            },
        )
        first, second = policy_advice(wide)
        assert first.check == "open-network" and str(first.subject) == 'profile "world"'
        assert first.get("cidr") == "0.0.0.0/0" and second.get("cidr") == "169.254.0.0/16"
        assert first.reason.startswith("allows 0.0.0.0/0 without excepting 169.254.169.254/32, ")
        assert first.short_hint == "add them to its except list"

    def test_too_many_containers_are_counted_in_the_warning(self, policy: Policy) -> None:
        from webhook.core.proxy_env import MAX_CONTAINERS

        def wide(count: int) -> dict[str, Any]:
            return pod(
                {PROFILE: "web-via-proxy"},
                spec=pod_spec(*(container(f"c{i}") for i in range(count))),
            )

        at_bound = mutate(make_request(wide(MAX_CONTAINERS)), ns_labels(), policy)
        assert at_bound.patch and not at_bound.findings
        over = mutate(make_request(wide(MAX_CONTAINERS + 1)), ns_labels(), policy)
        assert over.patch == () and over.allowed
        (finding,) = over.findings
        assert finding.details() == {
            "problem": "too-many-containers",
            "containers": MAX_CONTAINERS + 1,
            "limit": MAX_CONTAINERS,
        }

    def test_env_from_sources_are_named(self, policy: Policy) -> None:
        env_from = [
            {"configMapRef": {"name": "settings"}},
            {"secretRef": {}},
            "not a source",
        ]
        obj = pod({PROFILE: "web-via-proxy"}, spec=pod_spec(container(envFrom=env_from)))
        (finding,) = mutate(make_request(obj), ns_labels(), policy).findings
        assert finding.get("sources") == ("configMap/settings", "secret/?")
        assert "reads envFrom configMap/settings, secret/?" in finding.reason

    def test_the_labels_only_note_names_the_namespace(self, policy: Policy) -> None:
        decision = validate(
            make_request(workload("Deployment", {PROFILE: "none"})),
            ns_labels("enforce", "none"),
            policy,
        )
        (note,) = decision.findings
        assert note.details() == {"namespace": "payments", "inject": "none"}
        assert "label it egress-guard.io/inject=networkpolicy" in note.hint
        again = validate(
            make_request(workload("Deployment", {PROFILE: "none"})),
            ns_labels("enforce", "none"),
            policy,
        )
        assert again.findings[0] is note, "memoised: one finding for every review there"


class TestReviewEdges:
    """Edges of the NetworkPolicy and namespace reviews that mutation testing showed unpinned."""

    def test_answers_carry_the_namespaces_mode_and_findings(self, policy: Policy) -> None:
        req = np_request(network_policy(egress({})))
        warned = review_network_policy(req, ns_labels("warn", "networkpolicy"), policy, OWN)
        assert warned.mode is Mode.WARN and warned.findings and warned.warnings
        audited = review_network_policy(req, ns_labels("audit", "networkpolicy"), policy, OWN)
        assert audited.mode is Mode.AUDIT and audited.audit_annotations["violation"]
        fine = np_request(network_policy(egress(STRIPE_RANGE, selector=STRIPE_ONLY)))
        assert review_network_policy(fine, ns_labels(), policy, OWN).mode is Mode.ENFORCE
        exempt = replace(req, namespace="kube-system")
        assert review_network_policy(exempt, ns_labels(), policy, OWN).note is Note.EXEMPT

    def test_a_policy_being_deleted_may_widen_on_its_way_out(self, policy: Policy) -> None:
        narrow = network_policy(egress(STRIPE_RANGE, selector=STRIPE_ONLY))
        wider = network_policy(egress({}))
        wider["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        update = np_request(wider, operation="UPDATE", old=narrow)
        assert np_verdict(policy, update) is Verdict.ALLOWED
        del wider["metadata"]["deletionTimestamp"]
        assert np_verdict(policy, np_request(wider, operation="UPDATE", old=narrow)) is (
            Verdict.DENIED
        )

    def test_a_delete_without_an_old_object_is_let_through(self, policy: Policy) -> None:
        req = replace(np_request(network_policy(egress({}))), operation="DELETE", object=None)
        assert np_verdict(policy, req) is Verdict.ALLOWED
        trusted = np_request(network_policy(egress({})), user=WEBHOOK_USER, groups=())
        assert np_verdict(policy, trusted) is Verdict.ALLOWED

    def test_under_inject_all_the_proxy_route_of_a_profile_is_its_own(self, policy: Policy) -> None:
        to_proxy = {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "egress-system"}
                    },
                    "podSelector": {"matchLabels": {"app": "egress-proxy"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 3128}],
        }
        req = np_request(network_policy(egress(to_proxy, selector=STRIPE_ONLY)))
        assert np_verdict(policy, req, ns_labels("enforce", "all")) is Verdict.ALLOWED
        assert np_verdict(policy, req, ns_labels("enforce", "networkpolicy")) is Verdict.DENIED

    def test_in_cluster_peers_are_read_in_the_policys_namespace(self, policy: Policy) -> None:
        own = {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}
        profiles = policy.model_dump(by_alias=True)["profiles"]
        local = policy_with(
            policy,
            profiles={**profiles, "db-client": {"allow": [{"podSelector": {"app": "db"}}]}},
        )
        selector = {"matchLabels": {PROFILE: "db-client"}}
        assert np_verdict(local, np_request(network_policy(egress(own, selector=selector)))) is (
            Verdict.ALLOWED
        )
        elsewhere = replace(
            np_request(network_policy(egress(own, selector=selector))), namespace="shop"
        )
        assert np_verdict(local, elsewhere) is Verdict.ALLOWED
        expression = {
            "matchExpressions": [{"key": PROFILE, "operator": "In", "values": ["db-client"]}]
        }
        assert np_verdict(local, np_request(network_policy(egress(own, selector=expression)))) is (
            Verdict.ALLOWED
        )
        other = {"matchExpressions": [{"key": "team", "operator": "In", "values": ["db-client"]}]}
        assert np_verdict(local, np_request(network_policy(egress(own, selector=other)))) is (
            Verdict.DENIED
        )

    def test_an_egress_list_that_is_no_list_widens_for_the_selected_profiles(
        self, policy: Policy
    ) -> None:
        from webhook.core.egress_coverage import uncovered

        spec = {"podSelector": STRIPE_ONLY, "policyTypes": ["Egress"], "egress": "x"}
        assert uncovered(spec, "payments", policy, namespace_injects_all=False) == [
            (0, ("stripe",))
        ]

    def test_a_namespace_is_named_from_its_object(self, policy: Policy) -> None:
        governed = policy_with(policy, governance=GOVERNED)
        req = replace(namespace_update(ns_labels("enforce"), ns_labels("warn")), name="")
        refused = review_namespace_change(req, governed)
        assert refused is not None
        assert str(refused.violations[0].subject) == 'Namespace "payments"'
        exempt = replace(namespace_update(ns_labels("enforce"), {}), name="")
        exempt.object["metadata"]["name"] = "kube-system"  # type: ignore[index]
        assert review_namespace_change(exempt, governed) is None
        typo = namespace_update({MODE: "enforse"}, {})
        (finding,) = review_namespace_change(typo, governed).violations  # type: ignore[union-attr]
        assert finding.details()["before"] == "enforce"

    @pytest.mark.parametrize(
        "change",
        [
            {"group": "example.com"},
            {"sub_resource": "scale"},
            {"old_object": None},
            {"object": None},
            {"kind": "Pod"},
        ],
    )
    def test_only_a_namespace_update_is_governed(
        self, policy: Policy, change: dict[str, Any]
    ) -> None:
        governed = policy_with(policy, governance=GOVERNED)
        req = replace(namespace_update(ns_labels("enforce"), {}), **change)
        assert review_namespace_change(req, governed) is None


class TestRuleEdges:
    """More edges of the enforcement rules that mutation testing showed unpinned: what each
    verdict, finding and warning says, and the requests only a crafted client sends."""

    # --- Multus ---------------------------------------------------------------------------

    def test_multus_is_not_refused_where_no_network_policy_holds_pods(self, policy: Policy) -> None:
        decision = validate(
            make_request(multus({PROFILE: "none"})), ns_labels("enforce", "none"), policy
        )
        assert decision.verdict is Verdict.ALLOWED
        assert [f.check for f in decision.findings] == ["not-network-enforced"]

    def test_both_multus_annotations_are_named_and_the_warning_is_short(
        self, policy: Policy
    ) -> None:
        obj = multus({PROFILE: "none"})
        obj["spec"]["template"]["metadata"]["annotations"]["v1.multus-cni.io/default-network"] = (
            "macvlan"
        )
        refused = validate(make_request(obj), ns_labels(), policy)
        assert refused.message == (
            'Deployment "router" uses Multus networks: no NetworkPolicy restricts them: remove the '
            "pod annotation k8s.v1.cni.cncf.io/networks, v1.multus-cni.io/default-network, or "
            "give it a profile with secondaryNetworks: true"
        )
        warned = validate(make_request(obj), ns_labels("warn", "networkpolicy"), policy)
        assert warned.warnings[0] == (
            'egress-guard (warn): Deployment "router" uses Multus networks: no NetworkPolicy '
            "restricts them: drop the annotation"
        )

    # --- what a tenant's NetworkPolicy opens ----------------------------------------------

    def test_a_block_is_read_as_its_network_whatever_its_host_bits(self, policy: Policy) -> None:
        """As the network plugins read it: 34.210.129.7/24 is 34.210.129.0/24."""
        for block in (
            {"cidr": "34.210.129.7/24"},
            {"cidr": "34.210.129.0/24", "except": ["34.210.129.7/25"]},
        ):
            rule = {"to": [{"ipBlock": block}], "ports": [{"port": 443}]}
            req = np_request(network_policy(egress(rule, selector=STRIPE_ONLY)))
            assert np_verdict(policy, req) is Verdict.ALLOWED, block

    def test_a_port_range_of_one_port_is_that_port(self, policy: Policy) -> None:
        rule = {
            "to": [{"ipBlock": {"cidr": "34.210.129.0/24"}}],
            "ports": [{"port": 443, "endPort": 443}],
        }
        req = np_request(network_policy(egress(rule, selector=STRIPE_ONLY)))
        assert np_verdict(policy, req) is Verdict.ALLOWED
        rule["ports"] = [{"port": 443, "endPort": 444}]
        req = np_request(network_policy(egress(rule, selector=STRIPE_ONLY)))
        assert np_verdict(policy, req) is Verdict.DENIED

    def test_a_selector_pinning_the_profile_twice_selects_what_both_allow(
        self, policy: Policy
    ) -> None:
        twice = {
            "matchExpressions": [
                {"key": PROFILE, "operator": "In", "values": ["stripe", "internal"]},
                {"key": PROFILE, "operator": "In", "values": ["stripe", "none"]},
            ]
        }
        assert selected_profiles(twice, policy) == ("stripe",)
        req = np_request(network_policy(egress(STRIPE_RANGE, selector=twice)))
        assert np_verdict(policy, req) is Verdict.ALLOWED
        nobody = {
            "matchLabels": {PROFILE: "stripe"},
            "matchExpressions": [{"key": PROFILE, "operator": "In", "values": ["none"]}],
        }
        assert selected_profiles(nobody, policy) == ()
        req = np_request(network_policy(egress({}, selector=nobody)))
        assert np_verdict(policy, req) is Verdict.ALLOWED, "it selects no pod"

    def test_pods_of_a_profile_the_file_does_not_define_get_dns_alone(self, policy: Policy) -> None:
        ghost = {"matchLabels": {PROFILE: "ghost"}}
        dns = {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    },
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"port": 53, "protocol": "UDP"}],
        }
        assert np_verdict(policy, np_request(network_policy(egress(dns, selector=ghost)))) is (
            Verdict.ALLOWED
        )
        req = np_request(network_policy(egress(STRIPE_RANGE, selector=ghost)))
        (finding,) = review_network_policy(req, ns_labels(), policy, OWN).violations
        assert finding.get("profiles") == ("ghost",)

    def test_other_pods_in_a_profiles_namespaces_are_more(self, policy: Policy) -> None:
        """internal reaches ledger pods in the payments team's namespaces, not all their pods."""
        internal = {"matchLabels": {PROFILE: "internal"}}
        for pods, verdict in (
            ({"app": "ledger"}, Verdict.ALLOWED),
            ({"app": "vault"}, Verdict.DENIED),
        ):
            rule = {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"team": "payments"}},
                        "podSelector": {"matchLabels": pods},
                    }
                ],
                "ports": [{"port": 8080}],
            }
            req = np_request(network_policy(egress(rule, selector=internal)))
            assert np_verdict(policy, req) is verdict, pods

    def test_a_peer_naming_the_policys_own_namespace_is_in_it(self, policy: Policy) -> None:
        profiles = policy.model_dump(by_alias=True)["profiles"]
        local = policy_with(
            policy,
            profiles={**profiles, "db-client": {"allow": [{"podSelector": {"app": "db"}}]}},
        )
        named = {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "payments"}
                    },
                    "podSelector": {"matchLabels": {"app": "db"}},
                }
            ]
        }
        selector = {"matchLabels": {PROFILE: "db-client"}}
        req = np_request(network_policy(egress(named, selector=selector)))
        assert np_verdict(local, req) is Verdict.ALLOWED
        assert np_verdict(local, replace(req, namespace="shop")) is Verdict.DENIED

    # --- the NetworkPolicy review's answers -----------------------------------------------

    def test_a_delete_never_widens_whatever_object_it_carries(self, policy: Policy) -> None:
        wide = network_policy(egress({}))
        req = replace(np_request(wide), operation="DELETE", old_object=wide)
        decision = review_network_policy(req, ns_labels(), policy, OWN)
        assert decision.verdict is Verdict.ALLOWED
        assert decision.mode is Mode.ENFORCE, "counted under the namespace's mode"

    def test_a_crafted_create_is_judged_without_its_old_object(self, policy: Policy) -> None:
        wide = network_policy(egress({}))
        req = np_request(wide, old=copy.deepcopy(wide))
        assert np_verdict(policy, req) is Verdict.DENIED

    def test_an_update_whose_egress_is_no_list_is_judged_whole(self, policy: Policy) -> None:
        old = network_policy(egress(STRIPE_RANGE, selector=STRIPE_ONLY))
        new = copy.deepcopy(old)
        new["spec"]["egress"] = {"ports": [{"port": 22}]}
        decision = review_network_policy(
            np_request(new, operation="UPDATE", old=old), ns_labels(), policy, OWN
        )
        assert decision.verdict is Verdict.DENIED
        assert decision.violations[0].get("profiles") == ("stripe",)

    def test_a_generated_name_is_shown_for_a_create(self, policy: Policy) -> None:
        obj = network_policy(egress({}))
        req = np_request(obj)
        obj["metadata"] = {"generateName": "open-", "namespace": "payments"}
        req = replace(req, name="")
        (finding, *_) = review_network_policy(req, ns_labels(), policy, OWN).violations
        assert str(finding.subject) == 'NetworkPolicy "open-<generated>"'

    def test_an_editor_may_be_named_as_a_user(self, policy: Policy) -> None:
        editors = policy_with(policy, governance={"networkPolicyEditors": {"users": ["root"]}})
        old = render_default_deny("payments", policy)
        req = np_request(None, operation="DELETE", old=old, user="root", groups=())
        assert np_verdict(editors, req) is Verdict.ALLOWED
        assert np_verdict(policy, req) is Verdict.DENIED
        wide = np_request(network_policy(egress({})), user="root", groups=())
        assert np_verdict(editors, wide) is Verdict.ALLOWED

    def test_warn_for_foreign_policies_says_them_under_the_namespaces_mode(
        self, policy: Policy
    ) -> None:
        warn = policy_with(policy, governance={"foreignNetworkPolicies": "warn"})
        req = np_request(network_policy(egress({"ports": [{"port": 22}]}, selector=STRIPE_ONLY)))
        decision = review_network_policy(req, ns_labels("warn", "networkpolicy"), warn, OWN)
        assert decision.verdict is Verdict.WARNED and decision.mode is Mode.WARN
        (said,) = decision.warnings
        assert said.startswith('egress-guard (warn): NetworkPolicy "mine" egress rule 1 opens')
        assert review_network_policy(req, ns_labels(), warn, OWN).mode is Mode.ENFORCE

    # --- relabelled Pods ------------------------------------------------------------------

    def test_the_owner_is_named_from_either_side_of_the_update(self, policy: Policy) -> None:
        orphaned = owned_pod("stripe")
        del orphaned["metadata"]["ownerReferences"]
        adopted = copy.deepcopy(orphaned)
        adopted["metadata"]["labels"][PROFILE] = "none"
        for new, old in ((orphaned, owned_pod("none")), (owned_pod("stripe"), adopted)):
            req = make_request(new, operation="UPDATE", old=old)
            (finding,) = validate(req, ns_labels(), policy).violations
            assert finding.reason.startswith("belongs to ReplicaSet 'web-5d4f'")

    def test_a_pod_without_an_owner_is_told_to_be_recreated(self, policy: Policy) -> None:
        req = make_request(pod({PROFILE: "stripe"}), operation="UPDATE", old=pod({PROFILE: "none"}))
        decision = validate(req, ns_labels(), policy)
        assert decision.message == (
            'Pod "web" is running: its profile label may not change from none to stripe: '
            "create a new Pod with the new profile"
        )
        (finding,) = decision.violations
        assert finding.details() == {"label": PROFILE, "before": "none", "after": "stripe"}

    def test_a_pod_being_deleted_and_relabelled_is_warned_under_warn(self, policy: Policy) -> None:
        new, old = pod({PROFILE: "stripe"}), pod({PROFILE: "none"})
        new["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        decision = validate(
            make_request(new, operation="UPDATE", old=old), ns_labels("warn"), policy
        )
        assert decision.verdict is Verdict.WARNED
        assert decision.warnings[1] == (
            "egress-guard: defined profiles: internal, none, stripe, web-via-proxy"
        )

    def test_a_create_is_judged_on_its_object_whatever_old_object_it_carries(
        self, policy: Policy
    ) -> None:
        req = make_request(pod({PROFILE: "stripe"}), old=pod({PROFILE: "none"}))
        assert validate(req, ns_labels(), policy).verdict is Verdict.ALLOWED

    # --- crafted workload reviews ---------------------------------------------------------

    def test_a_workload_review_without_its_group_or_object_is_still_refused(
        self, policy: Policy
    ) -> None:
        bare = AdmissionRequest(
            uid="u", kind="Deployment", operation="CREATE", namespace="payments", object=None
        )
        assert checks(validate(bare, ns_labels(), policy)) == ["malformed-object"]
        other = replace(bare, group="example.com")
        decision = validate(other, ns_labels(), policy)
        assert decision.allowed and decision.note is Note.NOT_A_WORKLOAD
        pod_without_object = replace(bare, kind="Pod")
        assert mutate(pod_without_object, ns_labels(), policy).note is Note.MALFORMED

    def test_under_networkpolicy_only_a_proxy_profile_gets_the_variables(
        self, policy: Policy
    ) -> None:
        """stripe names hosts but not `proxy: true`: its NetworkPolicy has no route to the
        proxy under inject networkpolicy, so its pods are given none."""
        labels = ns_labels("enforce", "networkpolicy")
        decision = mutate(make_request(pod({PROFILE: "stripe"})), labels, policy)
        assert decision.patch == () and decision.note is Note.NO_INJECTION
        assert mutate(make_request(pod({PROFILE: "web-via-proxy"})), labels, policy).patch

    # --- namespaces -----------------------------------------------------------------------

    def test_the_refusal_names_everyone_who_may_loosen(self, policy: Policy) -> None:
        governed = policy_with(policy, governance=GOVERNED)
        refused = review_namespace_change(
            namespace_update(ns_labels("enforce"), ns_labels("warn")), governed
        )
        assert refused is not None
        assert refused.violations[0].hint == (
            "ask one of: user root, group platform (governance.loosenNamespaces in the policy file)"
        )

    def test_a_nameless_namespace_is_refused_by_no_name(self, policy: Policy) -> None:
        governed = policy_with(policy, governance=GOVERNED)
        req = replace(namespace_update(ns_labels("enforce"), {}), name="")
        del req.object["metadata"]["name"]  # type: ignore[attr-defined]
        refused = review_namespace_change(req, governed)
        assert refused is not None
        assert refused.violations[0].subject == Subject("Namespace", "")

    # --- advice about the policy file and the proxy ---------------------------------------

    def test_an_except_elsewhere_leaves_the_metadata_address_open(self, policy: Policy) -> None:
        profiles = policy.model_dump(by_alias=True)["profiles"]
        world = {"allow": [{"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}]}
        (finding,) = policy_advice(policy_with(policy, profiles={**profiles, "world": world}))
        assert finding.get("unexcepted") == (
            "169.254.169.254/32",
            "172.16.0.0/12",
            "192.168.0.0/16",
        )
        assert finding.severity is Severity.ADVICE
        assert finding.hint == (
            "add them to the destination's except list (the metadata service hands out the "
            "node's credentials; the cluster's ranges are its pods)"
        )

    def test_every_env_from_source_is_looked_at(self, policy: Policy) -> None:
        env_from = [
            "not a source",
            {"configMapRef": {"name": "app"}, "prefix": "APP_"},
            {"configMapRef": {"name": "settings"}},
        ]
        obj = pod({PROFILE: "web-via-proxy"}, spec=pod_spec(container(envFrom=env_from)))
        (finding,) = mutate(make_request(obj), ns_labels(), policy).findings
        assert finding.get("sources") == ("configMap/settings",)

    def test_too_many_containers_are_said_whole(self, policy: Policy) -> None:
        from webhook.core.proxy_env import MAX_CONTAINERS

        obj = pod(
            {PROFILE: "web-via-proxy"},
            spec=pod_spec(*(container(f"c{i}") for i in range(MAX_CONTAINERS + 1))),
        )
        decision = mutate(make_request(obj), ns_labels(), policy)
        (finding,) = decision.findings
        assert (finding.check, finding.severity) == ("proxy-env", Severity.ADVICE)
        assert decision.warnings == (
            "egress-guard: proxy variables not injected: the pod has "
            f"{MAX_CONTAINERS + 1} containers, more than {MAX_CONTAINERS}: set them in the "
            "containers' env",
        )
