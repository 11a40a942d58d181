"""Soak: thousands of mixed reviews over keep-alive connections from several clients.

Zero errors, and memory that stays put: the workers' RSS grows less than 10% between the end of
warm-up and the end of the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from builders import PROFILE, container, pod, pod_spec, review_document, workload
from review_load import ReviewLoad
from robustness_support import rss_bytes, scaled, worker_pids
from running_server import running_server

MIXED = [
    lambda uid: review_document(workload("Deployment", {PROFILE: "stripe"}), uid=uid),
    lambda uid: review_document(workload("Deployment"), uid=uid),  # denied
    lambda uid: review_document(
        workload("CronJob", {PROFILE: "none"}), uid=uid, namespace="staging"
    ),
    lambda uid: review_document(
        workload("StatefulSet", {PROFILE: "internal"}),
        uid=uid,
        operation="UPDATE",
        oldObject=workload("StatefulSet"),
    ),
    lambda uid: review_document(pod(), uid=uid, namespace="sandbox"),  # audited
]


def mixed(uid: str) -> Any:
    return MIXED[hash(uid) % len(MIXED)](uid)


def proxied(uid: str) -> Any:
    spec = pod_spec(container("app", env=[{"name": "HTTP_PROXY", "value": "http://own:1"}]))
    return review_document(pod({PROFILE: "none"}, spec), uid=uid, namespace="shop")


def test_soak_mixed_reviews_no_errors_and_bounded_memory(tmp_path: Path) -> None:
    total = scaled(4000)
    warm_up = min(1000, total // 4)
    with running_server(tmp_path, workers=2) as server:
        context = server.tls_context()
        loads = [
            ReviewLoad([server.port], context, mixed, threads=3, max_seconds=600),
            ReviewLoad([server.port], context, proxied, threads=1, path="/mutate", max_seconds=600),
        ]
        for load in loads:
            load.start()
        started = time.monotonic()
        while sum(load.answered() for load in loads) < warm_up:
            time.sleep(0.05)
            assert time.monotonic() - started < 120, "warm-up took too long"
        workers = worker_pids(server.process.pid)
        assert len(workers) == 2
        after_warm_up = {pid: rss_bytes(pid) for pid in workers}
        while sum(load.answered() for load in loads) < total:
            time.sleep(0.1)
            assert time.monotonic() - started < 600, "the soak took too long"
        at_end = {pid: rss_bytes(pid) for pid in workers}
        stats = [load.stop() for load in loads]
        elapsed = time.monotonic() - started
    answered = sum(s.answered for s in stats)
    failures = [f for s in stats for f in s.failures]
    growth = max(at_end[pid] / after_warm_up[pid] - 1 for pid in workers)
    print(
        f"\nsoak: {answered} reviews in {elapsed:.1f} s over "
        f"{sum(s.connections_opened for s in stats)} connections, {len(failures)} failed, "
        f"worker RSS after warm-up {[round(v / 2**20, 1) for v in after_warm_up.values()]} MiB, "
        f"at end {[round(v / 2**20, 1) for v in at_end.values()]} MiB, growth {growth:.1%}"
    )
    assert not failures, failures[:5]
    assert answered >= total
    assert growth < 0.10
