"""Faults under load: a worker killed, a broken policy pushed, the Kubernetes API slow or down.

Each test counts what failed and prints it; the assertions hold the bounds a platform team relies
on: the server heals, a broken policy never replaces a good one, and a sick API costs a bounded
wait and a clear denial, never a hang past the webhook's timeout.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import PROFILE, review_document, workload
from local_apiserver import Fault, LocalApiServer
from review_load import ReviewLoad
from robustness_support import scaled, worker_pids
from running_server import RunningServer, running_server

WEBHOOK_TIMEOUT_S = 5.0
"""The timeoutSeconds the deployed webhook configurations give the API server."""


def allowed_review(uid: str) -> Any:
    return review_document(workload("Deployment", {PROFILE: "stripe"}), uid=uid)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_worker_killed_mid_load_is_replaced(tmp_path: Path) -> None:
    kills = scaled(2)
    with running_server(tmp_path, workers=2) as server:
        load = ReviewLoad([server.port], server.tls_context(), allowed_review, threads=4).start()
        for _ in range(kills):
            load.wait_for_answers(load.answered() + 300, timeout=30)
            victims = worker_pids(server.process.pid)
            assert len(victims) == 2
            os.kill(victims[0], signal.SIGKILL)
            wait_for(
                lambda victim=victims[0]: (
                    len(worker_pids(server.process.pid)) == 2
                    and victim not in worker_pids(server.process.pid)
                ),
                timeout=30,
                what="gunicorn to replace the killed worker",
            )
        before_end = load.answered()
        load.wait_for_answers(before_end + 300, timeout=30)
        stats = load.stop()
    print(
        f"\nworker kill: {kills} workers killed, {stats.answered} reviews answered, "
        f"{len(stats.failures)} failed (in flight on the killed worker)"
    )
    assert stats.answered >= before_end + 300, "the server did not keep answering"
    # Only reviews in flight on the killed worker can fail: at most one per client connection.
    assert len(stats.failures) <= 4 * kills, stats.failures


POLICY = """\
profiles:
  none: {}
  stripe: {}
namespaces:
  payments: {mode: %s}
"""


def test_a_broken_policy_pushed_at_runtime_keeps_the_last_good_one(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY % "enforce")
    denied_review = review_document(workload("Deployment"), uid="x")
    with running_server(tmp_path, "--config", str(policy), workers=2) as server:
        load = ReviewLoad([server.port], server.tls_context(), allowed_review, threads=2).start()
        assert not verdict(server, denied_review)["allowed"]
        policy.write_text("profiles: [this is not: valid\n")
        time.sleep(3)  # past the reload interval of every worker
        answers = [verdict(server, denied_review) for _ in range(20)]
        assert all(not answer["allowed"] for answer in answers), "the broken file took effect"
        wait_for(lambda: "policy reload failed" in server.log(), 10, "the reload error in the log")
        # A worker replaced now boots on the broken file: it serves the last good policy too.
        victim = worker_pids(server.process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: (
                len(worker_pids(server.process.pid)) == 2
                and victim not in worker_pids(server.process.pid)
            ),
            30,
            "gunicorn to replace the killed worker",
        )
        answers = [verdict(server, denied_review) for _ in range(20)]
        assert all(not answer["allowed"] for answer in answers), "a new worker lost the policy"
        policy.write_text(POLICY % "warn")
        wait_for(lambda: verdict(server, denied_review)["allowed"], 10, "the fixed policy")
        stats = load.stop()
    print(
        f"\nbroken policy push (and a worker replaced meanwhile): {stats.answered} reviews "
        f"answered, {len(stats.failures)} failed"
    )
    assert len(stats.failures) <= 2, stats.failures[:5]  # in flight on the killed worker


def verdict(server: RunningServer, document: Any) -> Any:
    status, body = server.send("/validate", document)
    assert status == 200
    return body["response"]


@pytest.mark.parametrize(
    ("fault", "label"),
    [
        pytest.param(
            Fault(verb="create", delay_s=30.0, times=None), "slow", id="api-slower-than-timeout"
        ),
        pytest.param(None, "down", id="api-down"),
    ],
)
def test_a_sick_api_costs_a_bounded_wait_and_a_clear_denial(
    tmp_path: Path, local_api: LocalApiServer, kubeconfig: Path, fault: Fault | None, label: str
) -> None:
    local_api.seed(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "payments", "labels": {"egress-guard.io/mode": "enforce"}},
        }
    )
    env = {"KUBECONFIG": str(kubeconfig)}
    with running_server(tmp_path, "--cluster", "kubeconfig", env=env, workers=1) as server:
        warm = verdict(server, review_document(workload("Deployment", {PROFILE: "none"})))
        assert warm["allowed"], warm  # the namespace is known; the profile "none" is in place
        if fault is None:
            local_api.go_down()
        else:
            local_api.add_fault(fault)
        timings, answers = [], []
        for index in range(scaled(3)):
            started = time.monotonic()
            answers.append(
                verdict(
                    server,
                    review_document(workload("Deployment", {PROFILE: "stripe"}), uid=f"s-{index}"),
                )
            )
            timings.append(time.monotonic() - started)
        cached = verdict(server, review_document(workload("Deployment", {PROFILE: "none"})))
    print(
        f"\nAPI {label}: {len(answers)} reviews needing a new policy, slowest answer "
        f"{max(timings):.2f} s, {sum(not a['allowed'] for a in answers)} denied"
    )
    assert max(timings) < WEBHOOK_TIMEOUT_S - 1, "the answer came too late for the API server"
    for answer in answers:
        assert not answer["allowed"]
        assert answer["status"]["code"] == 503
        assert "could not get its NetworkPolicies" in answer["status"]["message"]
    # What is already known and in place needs no API call: still admitted while the API is sick.
    assert cached["allowed"], orjson.dumps(cached)
