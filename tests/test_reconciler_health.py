"""The reconciler's health follows its loop's progress: a replica stuck in a pass fails its
liveness probe and is restarted; one that keeps going (leader or standby) stays healthy."""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from webhook.deploy.objects import DeployOptions
from webhook.deploy.reconciler_objects import reconciler_deployment
from webhook.reconcile.health import Progress, serve_health, stall_limit
from webhook.reconcile.loop import run_loop


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_stale_only_after_the_limit() -> None:
    clock = Clock()
    progress = Progress(10.0, clock)
    assert progress.problem() is None and not progress.started
    clock.now = 11.0
    assert "no first round for 11 s" in (progress.problem() or "")
    progress.beat()
    assert progress.problem() is None and progress.started
    clock.now = 20.5
    assert progress.problem() is None
    clock.now = 22.0
    assert "no progress for 11 s" in (progress.problem() or "")


def test_the_limit_leaves_room_for_a_long_pass() -> None:
    assert stall_limit(60.0) == 300.0
    assert stall_limit(600.0) == 1800.0


def status(server: Any, path: str) -> int:
    host, port = server.server_address[:2]
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


class HangingReconciler:
    """A pass that never returns (a hung watch, a deadlock) until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.passes = 0

    def run_once(self, may_act: Any = None) -> Any:
        self.passes += 1
        if self.passes > 1:
            self.release.wait()
        return object()


def test_a_loop_stuck_in_a_pass_fails_its_probe() -> None:
    progress = Progress(0.5)
    server = serve_health(progress, host="127.0.0.1", port=0)
    reconciler = HangingReconciler()
    stop = threading.Event()
    loop = threading.Thread(
        target=run_loop,
        args=(reconciler, None),
        kwargs={
            "interval_s": 0.05,
            "stop": stop,
            "on_report": lambda _report: None,
            "progress": progress,
        },
        daemon=True,
    )
    try:
        assert status(server, "/readyz") == 503, "not ready before its first round"
        loop.start()
        deadline = time.monotonic() + 5
        while reconciler.passes < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert status(server, "/healthz") == 200
        assert status(server, "/readyz") == 200
        time.sleep(0.7)  # the second pass hangs past the limit
        assert status(server, "/healthz") == 503
    finally:
        stop.set()
        reconciler.release.set()
        loop.join(5)
        with contextlib.suppress(Exception):
            server.shutdown()


def test_the_deployment_probes_the_health_port() -> None:
    container = reconciler_deployment(DeployOptions())["spec"]["template"]["spec"]["containers"][0]
    (port,) = container["ports"]
    assert port["name"] == "health"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
