"""The reconciler's plan, computed purely from namespaces, workload profiles and live policies."""

from __future__ import annotations

from typing import Any

import pytest
from builders import PROFILE, ns_labels, policy_with, workload

from webhook.core.network_policies import (
    DEFAULT_DENY_NAME,
    MANAGED_BY_LABEL,
    render_default_deny,
    render_profile,
)
from webhook.core.policy import Policy
from webhook.reconcile.plan import (
    NamespaceState,
    desired_network_policies,
    plan_reconcile,
    workload_profile,
)


def live(manifest: dict[str, Any], resource_version: str = "7") -> dict[str, Any]:
    """A generated policy as a list returns it: server metadata added, kind left out."""
    copy = {k: v for k, v in manifest.items() if k not in ("kind", "apiVersion")}
    copy["metadata"] = {**manifest["metadata"], "uid": "u", "resourceVersion": resource_version}
    return copy


def names(manifests: Any) -> list[str]:
    return [f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in manifests]


class TestDesired:
    def test_enforce_namespace_gets_default_deny_and_one_policy_per_profile_in_use(
        self, policy: Policy
    ) -> None:
        state = NamespaceState("payments", ns_labels(), frozenset({"stripe", "internal"}))
        assert sorted(desired_network_policies(state, policy)) == [
            DEFAULT_DENY_NAME,
            "egress-guard-profile-internal",
            "egress-guard-profile-stripe",
        ]

    @pytest.mark.parametrize(
        ("labels", "expected"),
        [
            pytest.param(ns_labels("enforce"), True, id="enforce"),
            pytest.param(ns_labels("enforce", "all"), True, id="enforce-all"),
            pytest.param(ns_labels("warn", "networkpolicy"), True, id="warn-asking"),
            pytest.param(ns_labels("enforce", "proxy"), False, id="proxy-only"),
            pytest.param(ns_labels("warn"), False, id="warn"),
            pytest.param(ns_labels("audit"), False, id="audit"),
            pytest.param({}, False, id="not-opted-in"),
        ],
    )
    def test_follow_the_effective_inject(
        self, labels: dict[str, str], expected: bool, policy: Policy
    ) -> None:
        state = NamespaceState("team", labels, frozenset({"none"}))
        assert bool(desired_network_policies(state, policy)) is expected

    def test_exempt_namespaces_want_nothing_whatever_their_labels(self, policy: Policy) -> None:
        state = NamespaceState("kube-system", ns_labels(), frozenset({"stripe"}))
        assert desired_network_policies(state, policy) == {}

    def test_undefined_profiles_are_ignored(self, policy: Policy) -> None:
        state = NamespaceState("payments", ns_labels(), frozenset({"gone"}))
        assert list(desired_network_policies(state, policy)) == [DEFAULT_DENY_NAME]

    def test_inject_all_renders_profiles_with_the_proxy(self, policy: Policy) -> None:
        state = NamespaceState("shop", ns_labels("enforce", "all"), frozenset({"stripe"}))
        wanted = desired_network_policies(state, policy)["egress-guard-profile-stripe"]
        assert wanted == render_profile("shop", "stripe", policy, namespace_injects_all=True)


class TestWorkloadProfile:
    @pytest.mark.parametrize("kind", ["Pod", "Deployment", "CronJob", "Job", "StatefulSet"])
    def test_reads_the_pod_template_of_every_kind(self, kind: str, policy: Policy) -> None:
        obj = workload(kind, {PROFILE: "stripe"})
        obj.pop("kind")  # list items carry no kind: it comes from the list
        assert workload_profile(kind, obj, policy) == "stripe"

    def test_undefined_missing_and_deleting_count_as_none(self, policy: Policy) -> None:
        assert (
            workload_profile("Deployment", workload("Deployment", {PROFILE: "x"}), policy) is None
        )
        assert workload_profile("Deployment", workload("Deployment", {}), policy) is None
        deleting = workload("Deployment", {PROFILE: "stripe"})
        deleting["metadata"]["deletionTimestamp"] = "2026-11-21T10:00:00Z"
        assert workload_profile("Deployment", deleting, policy) is None


class TestPlan:
    def test_creates_what_is_missing_in_a_stable_order(self, policy: Policy) -> None:
        plan = plan_reconcile(
            policy,
            [
                NamespaceState("b", ns_labels(), frozenset({"stripe"})),
                NamespaceState("a", ns_labels(), frozenset()),
            ],
            [],
            prune=True,
        )
        assert names(plan.creates) == [
            f"a/{DEFAULT_DENY_NAME}",
            f"b/{DEFAULT_DENY_NAME}",
            "b/egress-guard-profile-stripe",
        ]
        assert not plan.updates and not plan.deletes

    def test_policies_in_place_need_nothing(self, policy: Policy) -> None:
        generated = [
            live(render_default_deny("a", policy)),
            live(render_profile("a", "stripe", policy)),
        ]
        plan = plan_reconcile(
            policy, [NamespaceState("a", ns_labels(), frozenset({"stripe"}))], generated, prune=True
        )
        assert plan.empty
        assert plan.in_place == 2

    def test_a_drifted_policy_is_updated_from_its_live_copy(self, policy: Policy) -> None:
        drifted = live(render_default_deny("a", policy))
        drifted["spec"] = {"podSelector": {}, "policyTypes": ["Egress"]}
        plan = plan_reconcile(
            policy, [NamespaceState("a", ns_labels(), frozenset())], [drifted], prune=True
        )
        (update,) = plan.updates
        assert update.live is drifted
        assert update.desired == render_default_deny("a", policy)

    def test_opting_out_prunes_everything_generated_there(self, policy: Policy) -> None:
        generated = [
            live(render_default_deny("a", policy)),
            live(render_profile("a", "stripe", policy)),
        ]
        plan = plan_reconcile(
            policy, [NamespaceState("a", {}, frozenset({"stripe"}))], generated, prune=True
        )
        assert names(plan.deletes) == [f"a/{DEFAULT_DENY_NAME}", "a/egress-guard-profile-stripe"]
        assert not plan.creates

    def test_without_pruning_unwanted_policies_are_kept_and_listed(self, policy: Policy) -> None:
        generated = [live(render_default_deny("a", policy))]
        plan = plan_reconcile(policy, [NamespaceState("a", {})], generated, prune=False)
        assert plan.deletes == ()
        assert plan.kept == (("a", DEFAULT_DENY_NAME),)

    def test_an_unused_or_undefined_profile_policy_is_pruned_on_the_second_pass(
        self, policy: Policy
    ) -> None:
        fewer = policy_with(policy, profiles={"stripe": {}, "none": {}})
        generated = [
            live(render_default_deny("a", fewer)),
            live(render_profile("a", "stripe", fewer)),
            live(render_profile("a", "internal", policy)),
        ]
        states = [NamespaceState("a", ns_labels(), frozenset({"none"}))]
        first = plan_reconcile(fewer, states, generated, prune=True)
        assert names(first.creates) == ["a/egress-guard-profile-none"]
        assert first.deletes == ()  # one pass's evidence is not enough
        assert first.deferred == (
            ("a", "egress-guard-profile-internal"),
            ("a", "egress-guard-profile-stripe"),
        )
        second = plan_reconcile(fewer, states, generated, prune=True, unused_before=first.unused)
        assert names(second.deletes) == [
            "a/egress-guard-profile-internal",
            "a/egress-guard-profile-stripe",
        ]
        assert second.deferred == ()

    def test_a_profile_in_use_again_by_the_second_pass_is_kept(self, policy: Policy) -> None:
        generated = [
            live(render_default_deny("a", policy)),
            live(render_profile("a", "stripe", policy)),
        ]
        first = plan_reconcile(policy, [NamespaceState("a", ns_labels())], generated, prune=True)
        assert first.deferred == (("a", "egress-guard-profile-stripe"),)
        in_use = [NamespaceState("a", ns_labels(), frozenset({"stripe"}))]
        second = plan_reconcile(policy, in_use, generated, prune=True, unused_before=first.unused)
        assert second.empty and second.unused == frozenset()
        third = plan_reconcile(
            policy, [NamespaceState("a", ns_labels())], generated, prune=True,
            unused_before=second.unused,
        )  # fmt: skip
        assert third.deletes == ()  # the count starts over

    def test_a_policy_made_again_between_passes_is_another_policy(self, policy: Policy) -> None:
        before = [live(render_profile("a", "stripe", policy))]
        after = [{**before[0], "metadata": {**before[0]["metadata"], "uid": "v"}}]
        states = [NamespaceState("a", ns_labels())]
        first = plan_reconcile(policy, states, before, prune=True)
        second = plan_reconcile(policy, states, after, prune=True, unused_before=first.unused)
        assert second.deletes == ()
        assert second.deferred == (("a", "egress-guard-profile-stripe"),)

    def test_never_acts_in_exempt_namespaces(self, policy: Policy) -> None:
        generated = [live(render_default_deny("kube-system", policy))]
        plan = plan_reconcile(
            policy, [NamespaceState("kube-system", ns_labels(), frozenset())], generated, prune=True
        )
        assert plan.empty and plan.kept == ()

    def test_never_touches_what_it_did_not_generate(self, policy: Policy) -> None:
        hand_made = live(render_profile("a", "stripe", policy))
        hand_made["metadata"]["labels"] = {
            k: v for k, v in hand_made["metadata"]["labels"].items() if k != MANAGED_BY_LABEL
        }
        plan = plan_reconcile(policy, [NamespaceState("a", {})], [hand_made], prune=True)
        assert plan.empty

    def test_policies_in_namespaces_gone_meanwhile_are_left(self, policy: Policy) -> None:
        plan = plan_reconcile(policy, [], [live(render_default_deny("gone", policy))], prune=True)
        assert plan.empty


class TestPinnedEdges:
    def test_an_undefined_profile_does_not_hide_the_profiles_after_it(self, policy: Policy) -> None:
        state = NamespaceState("a", ns_labels(), frozenset({"aaa-gone", "internal", "stripe"}))
        assert sorted(desired_network_policies(state, policy)) == [
            DEFAULT_DENY_NAME,
            "egress-guard-profile-internal",
            "egress-guard-profile-stripe",
        ]

    def test_pruning_keeps_nothing_and_not_pruning_defers_nothing(self, policy: Policy) -> None:
        generated = [
            live(render_default_deny("gone-out", policy)),
            live(render_profile("a", "stripe", policy)),
        ]
        states = [NamespaceState("gone-out", {}), NamespaceState("a", ns_labels())]
        pruning = plan_reconcile(policy, states, generated, prune=True)
        assert pruning.kept == ()
        assert pruning.deferred == (("a", "egress-guard-profile-stripe"),)
        keeping = plan_reconcile(policy, states, generated, prune=False)
        assert keeping.deferred == ()
        assert sorted(keeping.kept) == [
            ("a", "egress-guard-profile-stripe"),
            ("gone-out", DEFAULT_DENY_NAME),
        ]

    def test_the_kind_decides_where_the_template_is_within_its_group(self, policy: Policy) -> None:
        """A custom kind that happens to be called CronJob keeps its template at spec.template."""
        obj = workload("Deployment", {PROFILE: "stripe"})
        assert workload_profile("CronJob", obj, policy, group="example.com") == "stripe"
        assert workload_profile("CronJob", obj, policy, group="batch") is None

    def test_an_object_that_runs_no_pods_has_no_profile(self, policy: Policy) -> None:
        config = {"metadata": {"name": "c", "labels": {PROFILE: "stripe"}}, "data": {}}
        assert workload_profile("ConfigMap", config, policy) is None
