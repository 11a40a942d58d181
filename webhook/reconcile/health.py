"""The reconciler's health: whether its loop still makes progress, not just whether it runs.

A reconciler stuck in a pass (a hung call, a deadlock) keeps its process alive and, once it has
lost its Lease, does nothing at all; a "process is up" probe would never restart it. The loop
beats after every round (a pass on the leader, a look at the Lease on a standby); `/healthz`
answers 503 once no beat came for `stall_after_s`, and the kubelet restarts the container.
`/readyz` is 200 from the first beat on. `/metrics` serves the reconcile metrics when given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from webhook.config.settings import RECONCILER_HEALTH_PORT

Exposition = Callable[[], bytes]


class Progress:
    """When the loop last made progress, and how long without it means it is stuck."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._started = clock()
        self._last: float | None = None

    def beat(self) -> None:
        self._last = self._clock()

    @property
    def started(self) -> bool:
        return self._last is not None

    def problem(self) -> str | None:
        """Why the loop counts as stuck, or None."""
        since = self._last if self._last is not None else self._started
        silent = self._clock() - since
        if silent > self.stall_after_s:
            what = "progress" if self._last is not None else "first round"
            return f"no {what} for {silent:.0f} s (limit {self.stall_after_s:.0f} s)"
        return None


def stall_limit(interval_s: float) -> float:
    """How long without a beat is a hang: three intervals, and at least five minutes (a pass
    over a large cluster may take minutes of its own)."""
    return max(3 * interval_s, 300.0)


class _Handler(BaseHTTPRequestHandler):
    progress: Progress
    timeout = 5  # an idle or trickling client never keeps a thread

    def do_GET(self) -> None:
        progress = self.server.progress  # type: ignore[attr-defined]
        metrics: Exposition | None = self.server.metrics  # type: ignore[attr-defined]
        if self.path == "/metrics" and metrics is not None:
            self._send(200, metrics(), CONTENT_TYPE_LATEST)
            return
        if self.path == "/healthz":
            problem = progress.problem()
        elif self.path == "/readyz":
            problem = progress.problem() or (None if progress.started else "no round yet")
        else:
            self._answer(404, "not found")
            return
        if problem is None:
            self._answer(200, "ok")
        else:
            self._answer(503, f"not healthy: {problem}")

    def _answer(self, status: int, text: str) -> None:
        self._send(status, f"{text}\n".encode(), "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: quiet
        return


def serve_health(
    progress: Progress,
    host: str = "0.0.0.0",
    port: int = RECONCILER_HEALTH_PORT,
    metrics: Exposition | None = None,
) -> Any:
    """Answer /healthz, /readyz (and /metrics, given `metrics`) on a thread of their own; returns
    the server (`.shutdown()` stops it, `.server_address` says where it listens)."""
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    server.progress = progress  # type: ignore[attr-defined]
    server.metrics = metrics  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="egress-guard-health", daemon=True)
    thread.start()
    return server
