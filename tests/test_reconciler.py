"""The reconciler and its leader election, against the local API server through the real client."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from builders import PROFILE, namespace, ns_labels, placed, policy_names, workload
from click.testing import CliRunner
from kubernetes import client
from local_apiserver import Fault, LocalApiServer

from webhook.cli.main import main
from webhook.cluster.client import api_client
from webhook.config.policy_file import PolicyStore
from webhook.core.network_policies import DEFAULT_DENY_NAME, render_default_deny, render_profile
from webhook.core.policy import Policy
from webhook.reconcile.leader_election import LeaderElector, LeaseSettings
from webhook.reconcile.loop import reconcile_once, run_loop
from webhook.reconcile.reconciler import Reconciler, ReconcileReport

STRIPE = "egress-guard-profile-stripe"
INTERNAL = "egress-guard-profile-internal"
PROXY = "egress-guard-profile-web-via-proxy"


HAND_MADE = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "allow-monitoring", "namespace": "payments", "labels": {"team": "obs"}},
    "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 9090}]}]},
}


@pytest.fixture
def cluster(local_api: LocalApiServer, policy: Policy) -> LocalApiServer:
    """payments (enforce, Deployment on stripe, CronJob on internal, a hand-made policy);
    opted-out (generated policies left from when it enforced); kube-system (exempt, with a
    generated policy); warned (warn mode, nothing to do)."""
    local_api.seed(
        namespace("payments", ns_labels("enforce")),
        namespace("opted-out", {}),
        namespace("kube-system", ns_labels("enforce")),
        namespace("warned", ns_labels("warn")),
        placed(workload("Deployment", {PROFILE: "stripe"}, name="api"), "payments"),
        placed(workload("CronJob", {PROFILE: "internal"}, name="ledger-sync"), "payments"),
        placed(workload("Deployment", {PROFILE: "stripe"}, name="old"), "opted-out"),
        placed(workload("Pod", {PROFILE: "stripe"}, name="tool"), "warned"),
        HAND_MADE,
        render_default_deny("opted-out", policy),
        render_profile("opted-out", "stripe", policy),
        render_default_deny("kube-system", policy),
    )
    local_api.reset_calls()
    return local_api


class TestPass:
    def test_brings_the_cluster_to_what_admission_would_make(
        self, cluster: LocalApiServer, kube: client.ApiClient
    ) -> None:
        (hand_made_before,) = [
            obj
            for obj in cluster.objects("networkpolicies", "payments")
            if obj["metadata"]["name"] == "allow-monitoring"
        ]
        exempt_before = cluster.objects("networkpolicies", "kube-system")
        report = Reconciler(kube, PolicyStore(None)).run_once()
        assert report.errors == []
        assert sorted(report.created) == [
            f"payments/{DEFAULT_DENY_NAME}",
            f"payments/{INTERNAL}",
            f"payments/{STRIPE}",
        ]
        assert sorted(report.deleted) == [
            f"opted-out/{DEFAULT_DENY_NAME}",
            f"opted-out/{STRIPE}",
        ]
        assert sorted(policy_names(cluster, "payments")) == sorted(
            ["allow-monitoring", DEFAULT_DENY_NAME, INTERNAL, STRIPE]
        )
        assert policy_names(cluster, "opted-out") == []
        assert policy_names(cluster, "warned") == []
        assert cluster.objects("networkpolicies", "kube-system") == exempt_before
        assert cluster.get("networkpolicies", "allow-monitoring", "payments") == hand_made_before

    def test_a_second_pass_only_reads(
        self, cluster: LocalApiServer, kube: client.ApiClient
    ) -> None:
        reconciler = Reconciler(kube, PolicyStore(None))
        reconciler.run_once()
        cluster.reset_calls()
        report = reconciler.run_once()
        assert (report.created, report.updated, report.deleted) == ([], [], [])
        assert report.unchanged == 3
        assert cluster.count(writes=True) == 0
        assert {call.verb for call in cluster.calls} == {"list"}
        assert cluster.count("list") == 10  # namespaces, networkpolicies, 8 workload kinds

    def test_without_pruning_opted_out_policies_are_kept(
        self, cluster: LocalApiServer, kube: client.ApiClient
    ) -> None:
        report = Reconciler(kube, PolicyStore(None), prune=False).run_once()
        assert report.deleted == []
        assert sorted(report.kept) == [f"opted-out/{DEFAULT_DENY_NAME}", f"opted-out/{STRIPE}"]
        assert sorted(policy_names(cluster, "opted-out")) == [DEFAULT_DENY_NAME, STRIPE]

    def test_a_drifted_policy_is_updated(
        self, cluster: LocalApiServer, kube: client.ApiClient, policy: Policy
    ) -> None:
        drifted = render_profile("payments", "stripe", policy)
        drifted["spec"] = {**drifted["spec"], "egress": [{}]}  # hand-edited: allow everything
        cluster.seed(drifted)
        report = Reconciler(kube, PolicyStore(None)).run_once()
        assert report.updated == [f"payments/{STRIPE}"]
        live = cluster.get("networkpolicies", STRIPE, "payments")
        assert live is not None
        assert live["spec"] == render_profile("payments", "stripe", policy)["spec"]

    def test_a_same_named_hand_made_policy_is_refused_and_left(
        self, cluster: LocalApiServer, kube: client.ApiClient
    ) -> None:
        (hand_made,) = cluster.seed(
            {**HAND_MADE, "metadata": {**HAND_MADE["metadata"], "name": STRIPE}}
        )
        report = Reconciler(kube, PolicyStore(None)).run_once()
        assert report.refused == [f"payments/{STRIPE}"]
        assert cluster.get("networkpolicies", STRIPE, "payments") == hand_made

    def test_a_failed_read_changes_nothing(
        self, cluster: LocalApiServer, kube: client.ApiClient
    ) -> None:
        cluster.add_fault(Fault(verb="list", resource="cronjobs", status=500, times=None))
        report = Reconciler(kube, PolicyStore(None)).run_once()
        assert report.errors and "nothing changed" in report.errors[0]
        assert cluster.count(writes=True) == 0
        assert sorted(policy_names(cluster, "opted-out")) == [DEFAULT_DENY_NAME, STRIPE]

    def test_workloads_are_listed_only_in_managed_namespaces(
        self, cluster: LocalApiServer, kube: client.ApiClient
    ) -> None:
        Reconciler(kube, PolicyStore(None)).run_once()
        lists = {(call.resource, call.namespace) for call in cluster.calls if call.verb == "list"}
        cluster_wide = {resource for resource, namespace in lists if not namespace}
        # the first pass under a policy file also looks for what unused backends left
        others = {"ciliumnetworkpolicies", "serviceentries", "sidecars"}
        assert cluster_wide == {"namespaces", "networkpolicies", *others}
        assert {namespace for _, namespace in lists if namespace} == {"payments"}
        assert ("pods", "payments") in lists and ("cronjobs", "payments") in lists

    def test_an_unused_profile_policy_is_pruned_only_on_the_second_pass(
        self, cluster: LocalApiServer, kube: client.ApiClient, policy: Policy
    ) -> None:
        cluster.seed(render_profile("payments", "web-via-proxy", policy))
        unused = f"payments/{PROXY}"
        reconciler = Reconciler(kube, PolicyStore(None))
        first = reconciler.run_once()
        assert first.deferred == [unused]
        assert unused not in first.deleted
        assert PROXY in policy_names(cluster, "payments")
        second = reconciler.run_once()
        assert second.deleted == [unused]
        assert PROXY not in policy_names(cluster, "payments")

    def test_a_profile_back_in_use_before_the_second_pass_is_kept(
        self, cluster: LocalApiServer, kube: client.ApiClient, policy: Policy
    ) -> None:
        cluster.seed(render_profile("payments", "web-via-proxy", policy))
        reconciler = Reconciler(kube, PolicyStore(None))
        assert reconciler.run_once().deferred == [f"payments/{PROXY}"]
        cluster.seed(
            placed(workload("Deployment", {PROFILE: "web-via-proxy"}, name="w"), "payments")
        )
        second = reconciler.run_once()
        assert (second.deleted, second.deferred) == ([], [])
        assert PROXY in policy_names(cluster, "payments")

    def test_a_pass_stops_writing_once_leadership_is_lost(
        self, cluster: LocalApiServer, kube: client.ApiClient
    ) -> None:
        answers = iter([True, False])
        report = Reconciler(kube, PolicyStore(None)).run_once(may_act=lambda: next(answers, False))
        assert report.stopped
        assert cluster.count(writes=True) == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(kube: client.ApiClient, identity: str, clock: Any = time.monotonic) -> LeaderElector:
    settings = LeaseSettings(
        namespace="egress-guard",
        name="egress-guard-reconciler",
        identity=identity,
        duration_s=4.0,
        renew_deadline_s=3.0,
        retry_period_s=0.2,
    )
    return LeaderElector(kube, settings, clock=clock)


class TestLease:
    def test_the_first_candidate_leads_and_the_second_waits(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        first, second = elector(kube, "a"), elector(kube, "b")
        assert first.try_acquire_or_renew()
        assert not second.try_acquire_or_renew()
        assert second.holder == "a"
        assert first.try_acquire_or_renew()  # renewing
        lease = local_api.get("leases", "egress-guard-reconciler", "egress-guard")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "a"
        assert lease["spec"]["leaseTransitions"] == 0

    def test_a_released_lease_is_taken_at_once(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        first, second = elector(kube, "a"), elector(kube, "b")
        assert first.try_acquire_or_renew()
        first.release()
        assert not first.is_leader()
        assert second.try_acquire_or_renew()
        lease = local_api.get("leases", "egress-guard-reconciler", "egress-guard")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1

    def test_a_silent_leader_is_replaced_only_after_the_lease_duration(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        clock = FakeClock()
        crashed, candidate = elector(kube, "a"), elector(kube, "b", clock)
        assert crashed.try_acquire_or_renew()
        assert not candidate.try_acquire_or_renew()  # observed now
        clock.now += 3.9
        assert not candidate.try_acquire_or_renew()
        clock.now += 0.2
        assert candidate.try_acquire_or_renew()

    def test_racing_candidates_produce_exactly_one_leader(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        candidates = [elector(kube, f"c{index}") for index in range(6)]
        start = threading.Barrier(len(candidates))
        results: dict[str, bool] = {}

        def attempt(candidate: LeaderElector) -> None:
            start.wait(5)
            results[candidate.settings.identity] = candidate.try_acquire_or_renew()

        threads = [threading.Thread(target=attempt, args=(c,)) for c in candidates]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        winners = [identity for identity, won in results.items() if won]
        assert len(winners) == 1
        lease = local_api.get("leases", "egress-guard-reconciler", "egress-guard")
        assert lease is not None and lease["spec"]["holderIdentity"] == winners[0]

    def test_a_leader_that_cannot_renew_stops_leading_before_the_lease_expires(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        clock = FakeClock()
        leader = elector(kube, "a", clock)
        assert leader.try_acquire_or_renew()
        local_api.go_down()
        clock.now += 2.0
        assert leader.try_acquire_or_renew()  # still within the renew deadline
        clock.now += 1.1
        assert not leader.try_acquire_or_renew()
        assert not leader.is_leader()
        local_api.come_up()


def test_two_reconcilers_one_leader(
    cluster: LocalApiServer, tmp_path: Path, policy: Policy
) -> None:
    """Two replicas, each with its own credentials, loop side by side: only one ever writes,
    and when it stops (releasing the lease) the other takes over and acts."""
    clients = {
        user: api_client("kubeconfig", kubeconfig=str(cluster.kubeconfig(tmp_path / user, user)))
        for user in ("replica-a", "replica-b")
    }
    stops = {user: threading.Event() for user in clients}
    reports: dict[str, list[ReconcileReport]] = {user: [] for user in clients}
    threads = {
        user: threading.Thread(
            target=run_loop,
            args=(Reconciler(api, PolicyStore(None)), elector(api, user)),
            kwargs={
                "interval_s": 0.3,
                "stop": stops[user],
                "on_report": reports[user].append,
            },
            daemon=True,
        )
        for user, api in clients.items()
    }
    for thread in threads.values():
        thread.start()
    try:
        deadline = time.monotonic() + 10
        while not any(reports.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # several more passes and renewals
        leaders = [user for user, made in reports.items() if made]
        assert len(leaders) == 1
        (leader,) = leaders
        (follower,) = [user for user in clients if user != leader]
        writers = {
            call.user for call in cluster.calls if call.is_write and call.resource != "leases"
        }
        assert writers == {leader}
        assert len(reports[leader]) >= 2
        assert STRIPE in policy_names(cluster, "payments")

        stops[leader].set()
        threads[leader].join(5)

        def holder() -> str | None:
            lease = cluster.get("leases", "egress-guard-reconciler", "egress-guard")
            return None if lease is None else str(lease["spec"]["holderIdentity"])

        # released on stop (the elector thread's last round): empty, or already the other
        # replica's, well before the 4 s lease could have expired
        deadline = time.monotonic() + 3
        while holder() == leader and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder() in ("", follower)
        cluster.seed(
            placed(workload("Deployment", {PROFILE: "web-via-proxy"}, name="w"), "payments")
        )
        deadline = time.monotonic() + 10
        while not reports[follower] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reports[follower], "the other replica never took over"
        wait_until = time.monotonic() + 5
        while (
            "egress-guard-profile-web-via-proxy" not in policy_names(cluster, "payments")
            and time.monotonic() < wait_until
        ):
            time.sleep(0.05)
        assert "egress-guard-profile-web-via-proxy" in policy_names(cluster, "payments")
    finally:
        for user, api in clients.items():
            stops[user].set()
            threads[user].join(5)
            api.close()


class TestCommand:
    def test_once_reconciles_and_summarises(
        self, cluster: LocalApiServer, kubeconfig: Path
    ) -> None:
        result = CliRunner().invoke(
            main, ["reconcile", "--once", "--kubeconfig", str(kubeconfig), "--identity", "cli"]
        )
        assert result.exit_code == 0, result.output
        assert "3 created" in result.output and "2 deleted" in result.output
        assert STRIPE in policy_names(cluster, "payments")
        lease = cluster.get("leases", "egress-guard-reconciler", "egress-guard")
        assert lease is not None and lease["spec"]["holderIdentity"] == ""

    def test_once_does_nothing_while_another_replica_leads(
        self, cluster: LocalApiServer, kubeconfig: Path, kube: client.ApiClient
    ) -> None:
        assert elector(kube, "the-leader").try_acquire_or_renew()
        result = CliRunner().invoke(
            main, ["reconcile", "--once", "--kubeconfig", str(kubeconfig), "--identity", "cli"]
        )
        assert result.exit_code == 0, result.output
        assert "the-leader holds the lease" in result.output
        assert policy_names(cluster, "payments") == ["allow-monitoring"]

    def test_once_without_leader_election_and_keep(
        self, cluster: LocalApiServer, kubeconfig: Path
    ) -> None:
        result = CliRunner().invoke(
            main,
            [
                "reconcile",
                "--once",
                "--no-leader-elect",
                "--no-prune",
                "--kubeconfig",
                str(kubeconfig),
            ],
        )
        assert result.exit_code == 0, result.output
        assert "2 kept" in result.output
        assert cluster.get("leases", "egress-guard-reconciler", "egress-guard") is None


def test_reconcile_once_returns_none_when_not_leader(
    cluster: LocalApiServer, kube: client.ApiClient
) -> None:
    assert elector(kube, "x").try_acquire_or_renew()
    assert reconcile_once(Reconciler(kube, PolicyStore(None)), elector(kube, "y")) is None
    assert cluster.count("create", "networkpolicies") == 0


@pytest.mark.e2e
def test_the_command_loops_as_leader_and_releases_the_lease_on_sigterm(
    cluster: LocalApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    command = [
        sys.executable,
        "-m",
        "webhook",
        "reconcile",
        "--kubeconfig",
        str(kubeconfig),
        "--interval",
        "1",
        "--lease-duration",
        "3",
        "--identity",
        "replica-0",
    ]
    log = tmp_path / "reconcile.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while STRIPE not in policy_names(cluster, "payments") and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.05)
        assert STRIPE in policy_names(cluster, "payments"), log.read_text()
        lease = cluster.get("leases", "egress-guard-reconciler", "egress-guard")
        assert lease is not None and lease["spec"]["holderIdentity"] == "replica-0"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    lease = cluster.get("leases", "egress-guard-reconciler", "egress-guard")
    assert lease is not None and lease["spec"]["holderIdentity"] == ""
    passes = [line for line in log.read_text().splitlines() if '"reconcile pass' in line]
    assert passes and '"created"' in passes[0]
