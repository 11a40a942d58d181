"""Admission against a cluster: namespace labels and NetworkPolicies through the real client.

Every test drives the real cluster layer (`webhook.cluster.kube.connect`) against the local API
server, and reads what happened off the server: the objects it holds and the calls it received.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from builders import PROFILE, ns_labels, policy_with, request, workload
from local_apiserver import Call, Fault, LocalApiServer

from webhook.admission.budgets import NETWORK_POLICY_ENSURE_BUDGET_S
from webhook.admission.controller import AdmissionController, ReviewResult
from webhook.cluster.client import api_client
from webhook.cluster.egress_object_applier import ClusterEgressObjectApplier
from webhook.cluster.kube import ClusterConnection, connect
from webhook.cluster.namespaces import NamespaceCache
from webhook.core.decision import Verdict
from webhook.core.evaluate import Action, validate
from webhook.core.network_policies import (
    DEFAULT_DENY_NAME,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    render_default_deny,
    render_profile,
)
from webhook.core.policy import Policy
from webhook.reconcile.reconciler import Reconciler

STRIPE = "egress-guard-profile-stripe"
MODE = "egress-guard.io/mode"
HASH_KEY = "egress-guard.io/policy-hash"


class SwappablePolicy:
    """A PolicySource whose policy a test replaces, as a reload of the file would."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def current(self) -> Policy:
        return self.policy


@dataclass
class Cluster:
    api: LocalApiServer
    connection: ClusterConnection
    controller: AdmissionController
    policies: SwappablePolicy

    def admit(
        self, namespace: str = "payments", profile: str | None = "stripe", **options: Any
    ) -> ReviewResult:
        labels = {"app": "web"} if profile is None else {"app": "web", PROFILE: profile}
        obj = workload("Deployment", labels)
        return self.controller.review(request(obj, namespace=namespace, **options), Action.VALIDATE)

    def api_calls(self) -> list[Call]:
        """Calls but the long-running namespace watch."""
        return [call for call in self.api.calls if call.verb != "watch"]


def namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


@pytest.fixture
def cluster(local_api: LocalApiServer, kubeconfig: Path, policy: Policy) -> Iterator[Cluster]:
    local_api.seed(
        namespace("payments", ns_labels("enforce")),
        namespace("previews", ns_labels("warn", "networkpolicy")),
        namespace("plain", {}),
    )
    policies = SwappablePolicy(policy)
    connection = connect("kubeconfig", policies, kubeconfig=str(kubeconfig))
    try:
        yield following(local_api, connection, policies)
    finally:
        connection.close()


def following(
    local_api: LocalApiServer, connection: ClusterConnection, policies: SwappablePolicy
) -> Cluster:
    """The cluster once both watches follow the API (each watch request follows its list)."""
    assert connection.namespaces.synced.wait(10), "the namespace cache never filled"
    assert connection.synced(10), "the generated policies were never listed"
    wait_for(lambda: local_api.count("watch", "namespaces") == 1)
    wait_for(lambda: local_api.count("watch", "networkpolicies") == 1)
    controller = AdmissionController(policies, connection.namespaces, connection.network_policies)
    local_api.reset_calls()
    return Cluster(local_api, connection, controller, policies)


def validate_deployment(policy: Policy) -> Any:
    obj = workload("Deployment", {PROFILE: "stripe"})
    return validate(request(obj, namespace="payments"), ns_labels(), policy)


def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class TestEnsure:
    def test_first_admission_creates_both_policies_before_answering(
        self, cluster: Cluster, policy: Policy
    ) -> None:
        outcome = cluster.admit()
        assert outcome.decision.allowed
        (applied,) = outcome.applied
        assert applied.created == (DEFAULT_DENY_NAME, STRIPE)
        deny = cluster.api.get("networkpolicies", DEFAULT_DENY_NAME, "payments")
        stripe = cluster.api.get("networkpolicies", STRIPE, "payments")
        assert deny is not None and stripe is not None
        assert deny["spec"] == render_default_deny("payments", policy)["spec"]
        assert stripe["spec"] == render_profile("payments", "stripe", policy)["spec"]
        assert stripe["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
        assert [(c.verb, c.resource) for c in cluster.api_calls()] == [
            ("create", "networkpolicies"),
            ("create", "networkpolicies"),
        ]

    def test_a_second_admission_makes_no_call(self, cluster: Cluster) -> None:
        cluster.admit()
        cluster.api.reset_calls()
        outcome = cluster.admit()
        assert outcome.decision.allowed
        assert outcome.applied[0].unchanged == (DEFAULT_DENY_NAME, STRIPE)
        assert cluster.api_calls() == []

    def test_another_profile_later_costs_one_call(self, cluster: Cluster) -> None:
        cluster.admit(profile="stripe")
        cluster.api.reset_calls()
        outcome = cluster.admit(profile="internal")
        assert outcome.applied[0].created == ("egress-guard-profile-internal",)
        assert [(c.verb, c.name) for c in cluster.api_calls()] == [
            ("create", "egress-guard-profile-internal")
        ]

    def test_policies_already_in_place_are_found_not_rewritten(
        self, cluster: Cluster, policy: Policy
    ) -> None:
        cluster.api.seed(
            render_default_deny("payments", policy), render_profile("payments", "stripe", policy)
        )
        cluster.api.reset_calls()
        outcome = cluster.admit()
        assert outcome.applied[0].unchanged == (DEFAULT_DENY_NAME, STRIPE)
        assert cluster.api.count(writes=True) == 2  # two creates answered 409 AlreadyExists
        assert cluster.api.count("update") == 0
        assert all(c.status == 409 for c in cluster.api_calls() if c.verb == "create")

    def test_concurrent_admissions_create_each_policy_exactly_once(self, cluster: Cluster) -> None:
        start = threading.Barrier(16)
        outcomes: list[ReviewResult] = []

        def admit() -> None:
            start.wait(5)
            outcomes.append(cluster.admit())

        threads = [threading.Thread(target=admit) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(outcomes) == 16
        assert all(outcome.decision.allowed for outcome in outcomes)
        assert cluster.api.count("create", "networkpolicies") == 2
        assert len(cluster.api.objects("networkpolicies", "payments")) == 2
        created = [name for o in outcomes for name in o.applied[0].created]
        assert sorted(created) == [DEFAULT_DENY_NAME, STRIPE]

    def test_a_drifted_policy_is_updated(self, cluster: Cluster, policy: Policy) -> None:
        stale = render_profile("payments", "stripe", policy)
        stale["spec"] = {**stale["spec"], "egress": []}
        stale["metadata"]["annotations"] = {HASH_KEY: "0000000000000000"}
        stale["metadata"]["labels"] = {**stale["metadata"]["labels"], "team": "pay"}
        cluster.api.seed(stale)
        outcome = cluster.admit()
        assert outcome.applied[0].updated == (STRIPE,)
        live = cluster.api.get("networkpolicies", STRIPE, "payments")
        assert live is not None
        assert live["spec"] == render_profile("payments", "stripe", policy)["spec"]
        assert live["metadata"]["labels"]["team"] == "pay"  # others' labels are kept
        assert live["metadata"]["generation"] == 2

    def test_a_resource_version_conflict_is_retried(self, cluster: Cluster, policy: Policy) -> None:
        stale = render_profile("payments", "stripe", policy)
        stale["metadata"]["annotations"] = {HASH_KEY: "stale"}
        cluster.api.seed(stale)
        cluster.api.add_fault(
            Fault(verb="update", status=409, reason="Conflict", message="modified", times=1)
        )
        outcome = cluster.admit()
        assert outcome.decision.allowed
        assert outcome.applied[0].updated == (STRIPE,)
        assert cluster.api.count("update") == 2

    def test_a_same_named_hand_made_policy_is_never_overwritten(self, cluster: Cluster) -> None:
        hand_made = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": STRIPE, "namespace": "payments", "labels": {"owner": "me"}},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
        }
        (before,) = cluster.api.seed(hand_made)
        outcome = cluster.admit()
        assert not outcome.decision.allowed
        assert "was not generated by egress-guard" in outcome.decision.message
        assert "will not overwrite it" in outcome.decision.message
        assert outcome.decision.verdict is Verdict.DENIED  # the namespace's owner must act
        (finding,) = outcome.decision.violations
        assert finding.get("because") == "foreign"
        assert cluster.api.get("networkpolicies", STRIPE, "payments") == before

    def test_rbac_refusing_egress_guard_is_its_own_error_not_an_outage(
        self, cluster: Cluster
    ) -> None:
        cluster.api.add_fault(Fault(verb="create", status=403, reason="Forbidden", times=None))
        outcome = cluster.admit()
        assert outcome.decision.verdict is Verdict.ERRORED
        assert outcome.decision.code == 500
        assert "deploy/rbac.yaml" in outcome.decision.message

    def test_a_new_policy_file_is_checked_again_once(
        self, cluster: Cluster, policy: Policy
    ) -> None:
        cluster.admit()
        changed = policy_with(
            policy,
            profiles={**policy.model_dump(by_alias=True)["profiles"], "stripe": {"allow": []}},
        )
        cluster.policies.policy = changed
        cluster.api.reset_calls()
        outcome = cluster.admit()
        assert outcome.applied[0].updated == (STRIPE,)
        assert outcome.applied[0].unchanged == (DEFAULT_DENY_NAME,)
        live = cluster.api.get("networkpolicies", STRIPE, "payments")
        assert live is not None and "egress" not in live["spec"]
        cluster.api.reset_calls()
        cluster.admit()
        assert cluster.api_calls() == []

    def test_an_intent_from_just_before_a_label_prefix_reload_is_still_ensured(
        self, cluster: Cluster, policy: Policy
    ) -> None:
        decision = validate_deployment(policy)
        cluster.policies.policy = policy_with(policy, labelPrefix="egress.example.com")
        (intent,) = decision.intents
        applied = cluster.connection.network_policies.ensure(intent)
        assert applied.created == (DEFAULT_DENY_NAME, STRIPE)


class TestDryRun:
    def test_a_dry_run_writes_nothing_and_says_what_it_would_do(self, cluster: Cluster) -> None:
        outcome = cluster.admit(dry_run=True)
        assert outcome.decision.allowed
        assert any("dry run" in w and STRIPE in w for w in outcome.decision.warnings)
        assert cluster.api.count(writes=True) == 0
        assert cluster.api.objects("networkpolicies") == []

    def test_a_dry_run_gets_the_verdict_of_the_real_request(self, cluster: Cluster) -> None:
        """`kubectl apply --dry-run=server` must not say allowed where the apply is refused:
        with a same-named policy egress-guard did not make, both are denied."""
        cluster.api.seed(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": STRIPE, "namespace": "payments", "labels": {"o": "me"}},
                "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
            }
        )
        dry = cluster.admit(dry_run=True).decision
        assert cluster.api.count(writes=True) == 0, "a dry run only reads"
        real = cluster.admit().decision
        assert (dry.verdict, dry.message) == (real.verdict, real.message)
        assert dry.verdict is Verdict.DENIED

    def test_a_dry_run_with_the_api_down_is_unavailable_like_the_real_request(
        self, cluster: Cluster
    ) -> None:
        cluster.api.go_down()
        assert cluster.admit(dry_run=True).decision.verdict is Verdict.UNAVAILABLE


class TestFailures:
    def test_api_down_denies_in_enforce_with_a_clear_message_quickly(
        self, cluster: Cluster
    ) -> None:
        cluster.api.go_down()
        started = time.monotonic()
        outcome = cluster.admit()
        elapsed = time.monotonic() - started
        decision = outcome.decision
        assert not decision.allowed
        assert decision.verdict is Verdict.UNAVAILABLE  # the cluster did not answer: no denial
        assert decision.code == 503
        assert "could not get its NetworkPolicies egress-guard-default-deny" in decision.message
        assert [f.check for f in decision.violations] == ["network-policies-not-ensured"]
        assert "refused the connection" in decision.message
        assert "never runs with open egress" in decision.message
        assert elapsed < NETWORK_POLICY_ENSURE_BUDGET_S

    def test_a_slow_api_denies_within_the_time_budget(self, cluster: Cluster) -> None:
        cluster.api.add_fault(Fault(verb="create", delay_s=6.0, times=None))
        started = time.monotonic()
        outcome = cluster.admit()
        elapsed = time.monotonic() - started
        assert not outcome.decision.allowed
        assert "did not answer in time" in outcome.decision.message
        assert elapsed < NETWORK_POLICY_ENSURE_BUDGET_S + 0.5
        cluster.api.clear_faults()

    def test_a_forbidden_answer_names_the_missing_permission(self, cluster: Cluster) -> None:
        cluster.api.add_fault(Fault(verb="create", status=403, reason="Forbidden", times=None))
        outcome = cluster.admit()
        assert not outcome.decision.allowed
        assert "networkpolicies" in outcome.decision.message
        assert "deploy/rbac.yaml" in outcome.decision.message

    def test_warn_mode_admits_with_a_warning_when_the_api_is_down(self, cluster: Cluster) -> None:
        cluster.api.go_down()
        outcome = cluster.admit(namespace="previews")
        assert outcome.decision.allowed
        assert any("NetworkPolicies not ensured" in w for w in outcome.decision.warnings)

    def test_an_unknown_namespace_while_the_api_is_down_is_an_error_not_an_allow(
        self, cluster: Cluster
    ) -> None:
        cluster.api.go_down()
        outcome = cluster.admit(namespace="created-just-now")
        assert not outcome.decision.allowed
        assert outcome.decision.code == 503
        assert outcome.decision.verdict is Verdict.UNAVAILABLE
        message = outcome.decision.message
        assert 'Namespace "created-just-now" could not be read' in message
        assert "refused the connection" in message

    def test_admission_recovers_when_the_api_comes_back(self, cluster: Cluster) -> None:
        cluster.api.go_down()
        assert not cluster.admit().decision.allowed
        cluster.api.come_up()
        outcome = cluster.admit()
        assert outcome.decision.allowed
        assert outcome.applied[0].created == (DEFAULT_DENY_NAME, STRIPE)


def relabel(api: LocalApiServer, name: str, labels: dict[str, str]) -> None:
    """Replace a namespace's labels in the store (as `kubectl label` would; watches see it)."""
    live = api.get("namespaces", name)
    assert live is not None
    live["metadata"]["labels"] = labels
    api.store.update(api.resource("namespaces"), "", name, live, dry_run=False, strict=False)


def delete(api: LocalApiServer, resource: str, name: str, namespace: str = "") -> None:
    """Delete as `kubectl delete` would (a namespace takes its objects with it)."""
    api.store.delete(api.resource(resource), namespace, name, None, dry_run=False)


class TestNamespaces:
    def test_label_changes_arrive_by_the_watch_without_a_request_path_call(
        self, cluster: Cluster
    ) -> None:
        assert cluster.admit(profile=None).decision.allowed is False  # enforce
        client_side = cluster.connection.namespaces
        relabel(cluster.api, "payments", ns_labels("warn", "networkpolicy"))
        wait_for(lambda: (client_side.labels("payments") or {}).get(MODE) == "warn")
        outcome = cluster.admit(profile=None)
        assert outcome.decision.allowed  # warn
        assert outcome.applied[0].created == (DEFAULT_DENY_NAME,)
        assert cluster.api.count("get", "namespaces") == 0

    def test_a_cached_namespace_without_the_mode_label_is_asked_again(
        self, cluster: Cluster
    ) -> None:
        """A review only comes for a namespace with the mode label: memory without it is stale
        (the watch lags), so the one bounded GET answers instead of an unmanaged verdict."""
        cache = cluster.connection.namespaces
        assert cache.labels("plain") is not None
        # The label arrives by a route the watch has not delivered yet: the store, with the
        # watch events for it held back by leaving the cached entry as it was.
        cache.watch.stop()
        relabel(cluster.api, "plain", ns_labels("enforce"))
        cluster.api.reset_calls()
        outcome = cluster.admit(namespace="plain", profile=None)
        assert not outcome.decision.allowed
        assert "egress-guard.io/profile" in outcome.decision.message
        assert cluster.api.count("get", "namespaces") == 1


class TestFirstLookup:
    """The cache without its watch: what a lookup costs before the watch has delivered."""

    @pytest.fixture
    def cache(
        self, local_api: LocalApiServer, kubeconfig: Path, policy: Policy
    ) -> Iterator[NamespaceCache]:
        local_api.seed(namespace("payments", ns_labels("enforce")))
        local_api.reset_calls()
        api = api_client("kubeconfig", kubeconfig=str(kubeconfig))
        yield NamespaceCache(api, SwappablePolicy(policy))
        api.close()

    def test_a_known_namespace_costs_one_get_then_nothing(
        self, cache: NamespaceCache, local_api: LocalApiServer
    ) -> None:
        for _ in range(5):
            labels = cache.labels("payments")
            assert labels is not None and labels[PROFILE.replace("profile", "mode")] == "enforce"
        assert local_api.counts() == {("get", "namespaces"): 1}

    def test_concurrent_first_lookups_share_one_get(
        self, cache: NamespaceCache, local_api: LocalApiServer
    ) -> None:
        local_api.add_fault(Fault(verb="get", delay_s=0.3))
        threads = [threading.Thread(target=cache.labels, args=("payments",)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert local_api.count("get", "namespaces") == 1

    def test_a_missing_namespace_is_none_and_not_remembered(
        self, cache: NamespaceCache, local_api: LocalApiServer
    ) -> None:
        assert cache.labels("ghost") is None
        local_api.seed(namespace("ghost", {}))
        assert cache.labels("ghost") == {"kubernetes.io/metadata.name": "ghost"}
        assert local_api.count("get", "namespaces") == 2


def admit_until_in_place(cluster: Cluster, name: str, namespace: str = "payments") -> ReviewResult:
    """Admit until the policy exists again: the watch delivers the change a moment later."""
    outcomes: list[ReviewResult] = []

    def in_place() -> bool:
        outcomes.append(cluster.admit(namespace=namespace))
        return cluster.api.get("networkpolicies", name, namespace) is not None

    wait_for(in_place)
    return outcomes[-1]


class TestMemoryStaysHonest:
    """What the applier remembers is dropped as soon as the cluster says it no longer holds:
    otherwise admissions would make no call and pods would run with open egress."""

    def test_a_policy_deleted_out_of_band_is_made_again(self, cluster: Cluster) -> None:
        cluster.admit()
        delete(cluster.api, "networkpolicies", DEFAULT_DENY_NAME, "payments")
        outcome = admit_until_in_place(cluster, DEFAULT_DENY_NAME)
        assert outcome.decision.allowed
        assert outcome.applied[0].created == (DEFAULT_DENY_NAME,)
        assert outcome.applied[0].unchanged == (STRIPE,)

    def test_a_policy_opened_up_by_hand_is_restored(self, cluster: Cluster, policy: Policy) -> None:
        cluster.admit()
        live = cluster.api.get("networkpolicies", STRIPE, "payments")
        assert live is not None
        live["spec"]["egress"] = [{}]  # allow everything, hash annotation untouched
        cluster.api.store.update(
            cluster.api.resource("networkpolicies"), "payments", STRIPE, live, dry_run=False,
            strict=False,
        )  # fmt: skip

        def restored() -> bool:
            cluster.admit()
            current = cluster.api.get("networkpolicies", STRIPE, "payments")
            return (
                current is not None
                and current["spec"] == (render_profile("payments", "stripe", policy)["spec"])
            )

        wait_for(restored)

    def test_a_namespace_deleted_and_made_again_gets_its_policies_again(
        self, cluster: Cluster
    ) -> None:
        cluster.admit()
        delete(cluster.api, "namespaces", "payments")
        cluster.api.seed(namespace("payments", ns_labels("enforce")))
        outcome = admit_until_in_place(cluster, DEFAULT_DENY_NAME)
        assert outcome.decision.allowed
        assert sorted(o["metadata"]["name"] for o in cluster.api.objects("networkpolicies")) == [
            DEFAULT_DENY_NAME,
            STRIPE,
        ]

    def test_a_namespace_made_again_while_the_watches_were_away(self, cluster: Cluster) -> None:
        """No DELETED event is ever seen: the relist shows another UID and no policies."""
        cluster.admit()
        cluster.api.go_down()
        delete(cluster.api, "namespaces", "payments")
        cluster.api.seed(namespace("payments", ns_labels("enforce")))
        cluster.api.come_up()
        outcome = admit_until_in_place(cluster, DEFAULT_DENY_NAME)
        assert outcome.decision.allowed
        assert cluster.api.get("networkpolicies", STRIPE, "payments") is not None

    def test_opt_out_prune_and_opt_in_makes_the_policies_again(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        cluster.admit()
        relabel(cluster.api, "payments", {})
        kube = api_client("kubeconfig", kubeconfig=str(kubeconfig))
        try:
            report = Reconciler(kube, cluster.policies).run_once()
        finally:
            kube.close()
        assert sorted(report.deleted) == [f"payments/{DEFAULT_DENY_NAME}", f"payments/{STRIPE}"]
        relabel(cluster.api, "payments", ns_labels("enforce"))
        outcome = admit_until_in_place(cluster, DEFAULT_DENY_NAME)
        assert outcome.decision.allowed
        assert cluster.api.get("networkpolicies", STRIPE, "payments") is not None

    def test_a_deleted_namespace_leaves_nothing_behind(self, cluster: Cluster) -> None:
        names = [f"team-{index}" for index in range(5)]
        for name in names:
            cluster.api.seed(namespace(name, ns_labels("enforce")))
        for name in names:
            wait_for(lambda name=name: cluster.connection.namespaces.uid(name) is not None)
            assert cluster.admit(namespace=name).decision.allowed
        applier = cluster.connection.network_policies
        assert set(names) <= remembered(applier)
        for name in names:
            delete(cluster.api, "namespaces", name)
        wait_for(lambda: not set(names) & remembered(applier))


def remembered(applier: ClusterEgressObjectApplier) -> set[str]:
    """The namespaces the applier keeps anything for: policies in place, or writer locks."""
    return {*applier._in_place, *(namespace for namespace, _ in applier._locks)}


class TestWatchOutage:
    """Memory carries a short outage of a watch, and is not relied on after `stale_after_s`."""

    BOUND_S = 0.5

    @pytest.fixture
    def short(
        self, local_api: LocalApiServer, kubeconfig: Path, policy: Policy
    ) -> Iterator[Cluster]:
        local_api.seed(namespace("payments", ns_labels("enforce")))
        policies = SwappablePolicy(policy)
        connection = connect(
            "kubeconfig", policies, kubeconfig=str(kubeconfig), stale_after_s=self.BOUND_S
        )
        try:
            yield following(local_api, connection, policies)
        finally:
            connection.close()

    def test_labels_carry_a_short_outage_then_are_asked_for(self, short: Cluster) -> None:
        assert short.admit().decision.allowed
        short.api.go_down()
        assert short.admit().decision.allowed  # within the bound: memory answers
        time.sleep(self.BOUND_S + 0.1)
        outcome = short.admit()
        assert not outcome.decision.allowed
        assert outcome.decision.code == 503
        assert 'Namespace "payments" could not be read' in outcome.decision.message
        problem = short.connection.not_ready()
        assert problem is not None and "namespace watch has been down" in problem
        short.api.come_up()
        wait_for(lambda: short.connection.not_ready() is None)
        assert short.admit().decision.allowed

    def test_policies_are_checked_again_while_their_watch_is_down(self, short: Cluster) -> None:
        short.admit()
        short.api.add_fault(Fault(verb="list", resource="networkpolicies", status=500, times=None))
        short.api.go_down()  # cuts both watches; only the namespace one can list again
        short.api.come_up()
        wait_for(lambda: short.api.count("list", "networkpolicies") >= 1)
        time.sleep(self.BOUND_S + 0.1)
        delete(short.api, "networkpolicies", DEFAULT_DENY_NAME, "payments")  # no event seen
        wait_for(lambda: short.connection.not_ready() is None)  # the namespaces follow again
        outcome = short.admit()
        assert outcome.decision.allowed
        assert outcome.applied[0].created == (DEFAULT_DENY_NAME,)


class TestReadiness:
    def test_not_ready_until_both_caches_are_filled(
        self, local_api: LocalApiServer, kubeconfig: Path, policy: Policy
    ) -> None:
        local_api.add_fault(Fault(verb="list", resource="namespaces", delay_s=0.5))
        connection = connect("kubeconfig", SwappablePolicy(policy), kubeconfig=str(kubeconfig))
        try:
            problem = connection.not_ready()
            assert problem is not None and "namespace cache is not filled yet" in problem
            assert connection.namespaces.synced.wait(5)
            wait_for(lambda: connection.not_ready() is None)
        finally:
            connection.close()


def test_a_thousand_admissions_in_one_namespace_cost_only_the_first_calls(
    cluster: Cluster, policy: Policy
) -> None:
    """The measurement behind the hot-path rule: four profiles and three kinds, 1,000 reviews;
    the API sees the default-deny and one create per profile, and nothing after the warm-up."""
    profiles = ("stripe", "internal", "none", "web-via-proxy")
    kinds = ("Deployment", "Pod", "CronJob")
    outcomes: list[ReviewResult] = []
    warm_up_calls = 0
    for index in range(1000):
        obj = workload(kinds[index % 3], {PROFILE: profiles[index % 4]}, name=f"w{index}")
        outcomes.append(cluster.controller.review(request(obj), Action.VALIDATE))
        if index == len(profiles) - 1:
            warm_up_calls = len(cluster.api_calls())
    assert all(outcome.decision.allowed for outcome in outcomes)
    calls = cluster.api_calls()
    assert warm_up_calls == len(calls) == 1 + len(profiles)
    assert [(c.verb, c.resource, c.status) for c in calls] == [
        ("create", "networkpolicies", 201)
    ] * 5
    assert cluster.api.count("watch") == 0  # no watch was restarted either
    assert sorted(o["metadata"]["name"] for o in cluster.api.objects("networkpolicies")) == sorted(
        [DEFAULT_DENY_NAME, *(f"egress-guard-profile-{p}" for p in profiles)]
    )
