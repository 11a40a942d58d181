"""The reconciler on large clusters: a pass that keeps its lease, reads that grow with kinds and
pages rather than namespaces, writes at a bounded rate that back off when the server asks, and a
report (log line and metrics) of what a pass cost. Against the local API server, real client."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from builders import PROFILE, namespace, ns_labels, placed, policy_names, workload
from click.testing import CliRunner
from kubernetes import client
from local_apiserver import Fault, LocalApiServer

from webhook.cli.main import main
from webhook.cluster.write_pacing import PacingSettings
from webhook.config.policy_file import PolicyStore
from webhook.core.network_policies import DEFAULT_DENY_NAME
from webhook.core.policy import Policy
from webhook.reconcile.health import Progress, serve_health
from webhook.reconcile.leader_election import LeaderElector, LeaseSettings
from webhook.reconcile.loop import reconcile_once
from webhook.reconcile.metrics import ReconcileMetrics
from webhook.reconcile.reconciler import Reconciler, ReconcileReport

LEASE = "egress-guard-reconciler"
ONE_AT_A_TIME = PacingSettings(writes_per_second=1000, in_flight=1)
WORKLOAD_KINDS = 8
"""Deployments, StatefulSets, DaemonSets, CronJobs, Jobs, ReplicationControllers, ReplicaSets,
Pods: the built-in kinds the example policy reviews."""


def seed_namespaces(
    api: LocalApiServer, count: int, *, prefix: str = "team", per_namespace: int = 2
) -> None:
    """`count` enforcing namespaces, each with `per_namespace` Deployments on the stripe profile."""
    objects: list[dict[str, Any]] = []
    for index in range(count):
        name = f"{prefix}-{index:04d}"
        objects.append(namespace(name, ns_labels("enforce")))
        for number in range(per_namespace):
            deployment = workload("Deployment", {PROFILE: "stripe"}, name=f"app-{number}")
            objects.append(placed(deployment, name))
    api.seed(*objects)


def short_lease(kube: client.ApiClient, identity: str = "reconciler") -> LeaderElector:
    """A lease whose renew deadline (1 s) is shorter than the slowed passes below."""
    settings = LeaseSettings(
        namespace="egress-guard",
        name=LEASE,
        identity=identity,
        duration_s=1.5,
        renew_deadline_s=1.0,
        retry_period_s=0.2,
    )
    return LeaderElector(kube, settings)


def steal_lease(api: LocalApiServer, kube: client.ApiClient, thief: str, after_s: float) -> None:
    """Once the Lease has been held for `after_s`, another replica writes itself into it, as a
    candidate that saw it expire would."""
    deadline = time.monotonic() + 30
    while api.get("leases", LEASE, "egress-guard") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(after_s)
    leases = client.CoordinationV1Api(kube)
    for _ in range(20):  # the holder renews every 0.2 s: a write between two renewals wins
        lease = leases.read_namespaced_lease(LEASE, "egress-guard")
        lease.spec.holder_identity = thief
        try:
            leases.replace_namespaced_lease(LEASE, "egress-guard", lease)
            return
        except client.ApiException as err:
            if err.status != 409:
                raise


def thief(api: LocalApiServer, kube: client.ApiClient, after_s: float) -> threading.Thread:
    thread = threading.Thread(
        target=steal_lease, args=(api, kube, "other-replica", after_s), daemon=True
    )
    thread.start()
    return thread


class TestLeaseDuringAPass:
    def test_a_pass_longer_than_the_renew_deadline_keeps_its_lease_and_finishes(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        """With `--once`, nothing renewed the Lease during the pass: one longer than the renew
        deadline gave up half-way, thinking leadership lost."""
        seed_namespaces(local_api, 4, per_namespace=1)
        local_api.add_fault(
            Fault(verb="create", resource="networkpolicies", delay_s=0.2, times=None)
        )
        reconciler = Reconciler(kube, PolicyStore(None), pacing=ONE_AT_A_TIME)
        started = time.monotonic()
        report = reconcile_once(reconciler, short_lease(kube))
        assert report is not None
        assert time.monotonic() - started > 1.0  # longer than the renew deadline
        assert not report.stopped and report.left == 0
        assert report.complete
        assert len(report.created) == 8  # default deny and stripe in each of 4 namespaces
        renewals = [c for c in local_api.calls if c.resource == "leases" and c.verb == "update"]
        assert len(renewals) >= 3
        lease = local_api.get("leases", LEASE, "egress-guard")
        assert lease is not None and lease["spec"]["holderIdentity"] == ""  # released after

    def test_a_pass_that_really_loses_the_lease_stops_and_counts_what_it_left(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        seed_namespaces(local_api, 4, per_namespace=1)
        local_api.add_fault(
            Fault(verb="create", resource="networkpolicies", delay_s=0.2, times=None)
        )
        stealing = thief(local_api, kube, after_s=0.3)
        reconciler = Reconciler(kube, PolicyStore(None), pacing=ONE_AT_A_TIME)
        report = reconcile_once(reconciler, short_lease(kube))
        stealing.join(5)
        assert report is not None
        assert report.stopped and not report.complete
        assert report.left > 0
        assert len(report.created) + report.left == 8
        assert local_api.count("create", "networkpolicies") == len(report.created)
        lease = local_api.get("leases", LEASE, "egress-guard")
        assert lease is not None and lease["spec"]["holderIdentity"] == "other-replica"
        assert "changes left undone" in report.summary()

    def test_once_exits_non_zero_and_says_what_was_left_when_the_lease_is_lost(
        self, local_api: LocalApiServer, kube: client.ApiClient, kubeconfig: Path
    ) -> None:
        seed_namespaces(local_api, 4, per_namespace=1)
        local_api.add_fault(
            Fault(verb="create", resource="networkpolicies", delay_s=0.4, times=None)
        )
        stealing = thief(local_api, kube, after_s=0.5)
        try:
            result = CliRunner().invoke(
                main,
                [
                    "reconcile",
                    "--once",
                    "--kubeconfig",
                    str(kubeconfig),
                    "--identity",
                    "cli",
                    "--lease-duration",
                    "3",
                    "--writes-in-flight",
                    "1",
                ],
            )
        finally:
            stealing.join(5)
        assert result.exit_code == 1, result.output
        assert "stopped early" in result.output and "left undone" in result.output


class TestReads:
    def test_reads_grow_with_kinds_not_namespaces(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        """A converged pass over 12 managed namespaces and over 40 makes the same calls: one
        list of namespaces, one of generated policies and one per workload kind."""
        calls = []
        for count in (12, 40):
            seed_namespaces(local_api, count - (12 if count == 40 else 0), prefix=f"n{count}")
            reconciler = Reconciler(kube, PolicyStore(None), pacing=ONE_AT_A_TIME)
            assert reconciler.run_once().complete
            converged = reconciler.run_once()
            assert converged.managed == count
            assert (converged.created, converged.updated, converged.deleted) == ([], [], [])
            assert converged.unchanged == 2 * count
            calls.append(converged.api_calls)
        assert calls == [2 + WORKLOAD_KINDS, 2 + WORKLOAD_KINDS]

    def test_the_report_counts_the_calls_the_server_saw(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        seed_namespaces(local_api, 12)
        local_api.reset_calls()
        report = Reconciler(kube, PolicyStore(None)).run_once()
        assert report.api_calls == len(local_api.calls)
        # the lists (the first pass under a policy file also reads the three kinds of the backends
        # it does not use, for leftovers to prune), then 24 creates
        assert report.api_calls == 2 + WORKLOAD_KINDS + 3 + 24

    def test_cluster_wide_lists_are_read_a_page_at_a_time(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        seed_namespaces(local_api, 30, per_namespace=40)  # 1,200 Deployments: three pages
        local_api.reset_calls()
        report = Reconciler(kube, PolicyStore(None)).run_once()
        assert report.complete and len(report.created) == 60
        lists = [call for call in local_api.calls if call.verb == "list"]
        assert all(call.namespace == "" for call in lists)
        assert sum(call.resource == "deployments" for call in lists) == 3

    def test_a_throttled_page_is_asked_for_again(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        seed_namespaces(local_api, 12)
        local_api.add_fault(Fault(verb="list", resource="deployments", status=429, retry_after_s=1))
        report = Reconciler(kube, PolicyStore(None)).run_once()
        assert report.complete and len(report.created) == 24
        statuses = [c.status for c in local_api.calls if c.resource == "deployments"]
        assert statuses == [429, 200]

    def test_few_managed_namespaces_are_listed_one_by_one(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        """A pilot of 3 namespaces in a large cluster reads those 3, not every workload."""
        seed_namespaces(local_api, 3)
        local_api.seed(
            namespace("unmanaged", {}),
            *(placed(workload("Deployment", name=f"d{n}"), "unmanaged") for n in range(50)),
        )
        local_api.reset_calls()
        report = Reconciler(kube, PolicyStore(None)).run_once()
        assert report.complete and len(report.created) == 6
        namespaces = {call.namespace for call in local_api.calls if call.resource == "deployments"}
        assert namespaces == {"team-0000", "team-0001", "team-0002"}

    @pytest.mark.parametrize("managed_up_to", [0, 100])
    def test_both_ways_of_listing_find_the_same_profiles(
        self,
        local_api: LocalApiServer,
        kube: client.ApiClient,
        policy: Policy,
        managed_up_to: int,
    ) -> None:
        local_api.seed(
            namespace("payments", ns_labels("enforce")),
            namespace("ledger", ns_labels("audit", "networkpolicy")),
            namespace("opted-out", {}),
            placed(workload("CronJob", {PROFILE: "internal"}, name="sync"), "payments"),
            placed(workload("Pod", {PROFILE: "web-via-proxy"}, name="tool"), "ledger"),
            placed(workload("DaemonSet", {PROFILE: "stripe"}, name="agent"), "opted-out"),
        )
        reconciler = Reconciler(kube, PolicyStore(None), per_namespace_lists_up_to=managed_up_to)
        report = reconciler.run_once()
        assert sorted(report.created) == [
            f"ledger/{DEFAULT_DENY_NAME}",
            "ledger/egress-guard-profile-web-via-proxy",
            f"payments/{DEFAULT_DENY_NAME}",
            "payments/egress-guard-profile-internal",
        ]
        assert policy_names(local_api, "opted-out") == []


class TestWrites:
    def test_no_more_writes_in_flight_than_allowed(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        seed_namespaces(local_api, 12, per_namespace=1)
        local_api.add_fault(
            Fault(verb="create", resource="networkpolicies", delay_s=0.05, times=None)
        )
        local_api.reset_calls()
        pacing = PacingSettings(writes_per_second=1000, in_flight=3)
        report = Reconciler(kube, PolicyStore(None), pacing=pacing).run_once()
        assert len(report.created) == 24
        assert local_api.peak_writes_in_flight == 3

    def test_writes_keep_to_the_rate(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        seed_namespaces(local_api, 10, per_namespace=1)
        pacing = PacingSettings(writes_per_second=20, in_flight=4)  # a burst of 2, then 20/s
        started = time.monotonic()
        report = Reconciler(kube, PolicyStore(None), pacing=pacing).run_once()
        assert len(report.created) == 20
        assert time.monotonic() - started >= (20 - 2) / 20

    def test_a_429_is_waited_out_as_retry_after_says_and_the_write_made(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        seed_namespaces(local_api, 2, per_namespace=1)
        local_api.add_fault(
            Fault(
                verb="create",
                resource="networkpolicies",
                status=429,
                reason="TooManyRequests",
                message="too many requests, please try again later",
                retry_after_s=1,
            )
        )
        started = time.monotonic()
        report = Reconciler(kube, PolicyStore(None)).run_once()
        assert time.monotonic() - started >= 1.0
        assert report.complete and report.retries == 1
        assert len(report.created) == 4
        assert [call.status for call in local_api.calls if call.verb == "create"].count(429) == 1

    def test_a_server_error_is_tried_again(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        seed_namespaces(local_api, 1, per_namespace=1)
        local_api.add_fault(Fault(verb="create", resource="networkpolicies", status=503, times=2))
        report = Reconciler(kube, PolicyStore(None)).run_once()
        assert report.complete and report.retries == 2
        assert sorted(policy_names(local_api, "team-0000")) == [
            DEFAULT_DENY_NAME,
            "egress-guard-profile-stripe",
        ]

    def test_a_refusal_is_not_tried_again_and_fails_the_pass(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        seed_namespaces(local_api, 1, per_namespace=1)
        local_api.add_fault(
            Fault(verb="create", resource="networkpolicies", status=403, reason="Forbidden")
        )
        report = Reconciler(kube, PolicyStore(None)).run_once()
        assert report.retries == 0 and len(report.errors) == 1
        assert not report.complete
        assert len(report.created) == 1

    def test_creates_are_all_made_before_any_delete(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        seed_namespaces(local_api, 6, per_namespace=1)
        Reconciler(kube, PolicyStore(None)).run_once()
        for index in range(3):  # half the namespaces opt out, the other half gain a profile
            local_api.store.seed(
                placed(workload("Pod", {PROFILE: "internal"}, name="p"), f"team-{index + 3:04d}")
            )
        for index in range(3):
            ns = local_api.get("namespaces", f"team-{index:04d}")
            assert ns is not None
            ns["metadata"]["labels"] = {}
            local_api.store.update(
                local_api.resource("namespaces"),
                "",
                ns["metadata"]["name"],
                ns,
                dry_run=False,
                strict=False,
            )
        local_api.reset_calls()
        report = Reconciler(kube, PolicyStore(None), pacing=PacingSettings(in_flight=4)).run_once()
        assert len(report.created) == 3 and len(report.deleted) == 6
        writes = [call.verb for call in local_api.calls if call.is_write]
        assert writes == ["create"] * 3 + ["delete"] * 6


class TestReportAndMetrics:
    def test_the_summary_and_fields_say_what_a_pass_cost(
        self, local_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        seed_namespaces(local_api, 3)
        report = Reconciler(kube, PolicyStore(None)).run_once()
        fields = report.as_fields()
        assert fields["apiCalls"] == report.api_calls > 0
        assert fields["durationSeconds"] >= 0
        assert (fields["left"], fields["retries"]) == (0, 0)
        assert f"{report.api_calls} API calls in" in report.summary()

    def test_metrics_count_passes_objects_and_calls(self) -> None:
        metrics = ReconcileMetrics(wall_clock=lambda: 1_700_000_000.0)
        metrics.observe(
            ReconcileReport(
                namespaces=5,
                managed=2,
                created=["a/x", "a/y"],
                deleted=["b/z"],
                unchanged=4,
                api_calls=17,
                duration_s=0.3,
                retries=1,
            )
        )
        metrics.observe(ReconcileReport(namespaces=5, managed=2, stopped=True, left=3))
        text = metrics.exposition().decode()
        assert 'egress_guard_reconcile_passes_total{result="complete"} 1.0' in text
        assert 'egress_guard_reconcile_passes_total{result="stopped"} 1.0' in text
        assert 'egress_guard_reconcile_objects_total{action="created"} 2.0' in text
        assert 'egress_guard_reconcile_objects_total{action="left"} 3.0' in text
        assert "egress_guard_reconcile_api_calls_total 17.0" in text
        assert "egress_guard_reconcile_write_retries_total 1.0" in text
        assert 'egress_guard_reconcile_namespaces{scope="managed"} 2.0' in text
        assert "egress_guard_reconcile_pass_duration_seconds_count 2.0" in text
        assert "egress_guard_reconcile_last_complete_timestamp_seconds 1.7e+09" in text

    def test_the_health_port_serves_the_metrics(self) -> None:
        metrics = ReconcileMetrics()
        metrics.observe(ReconcileReport(api_calls=9))
        server = serve_health(Progress(60), host="127.0.0.1", port=0, metrics=metrics.exposition)
        try:
            port = server.server_address[1]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                body = answer.read().decode()
                assert answer.headers["Content-Type"].startswith("text/plain")
            assert "egress_guard_reconcile_api_calls_total 9.0" in body
        finally:
            server.shutdown()
