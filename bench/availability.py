"""Availability scenarios: reviews answered while connections stall, the memory a worker holds,
and the time from start to ready beside a large cluster.

- Slow clients: connections that stall in the four ways a pod could make them (nothing sent, one
  byte of a TLS handshake, half a request's headers, a body that never ends) are held open
  against the server while wrk measures the 6 KB Deployment, side by side with the same run
  without them.
- Memory: the serving worker's resident memory at idle (after start-up) and after every other
  scenario (the soak).
- Start-up: `egress-guard serve` against the local API server holding many namespaces, from
  process start to `/readyz` 200 (the namespace cache listed, the generated policies listed).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.cluster import TESTS
from bench.procstat import children, rss_bytes

sys.path.insert(0, str(TESTS))
stalled_connections = importlib.import_module("stalled_clients").stalled_connections
"""tests/stalled_clients.stalled_connections: test-suite code, shared with the benchmark."""


def worker_rss_mib(server_pid: int) -> float:
    """Resident memory of the serving worker (the master's child), MiB."""
    workers = children(server_pid)
    return max((rss_bytes(pid) for pid in workers), default=0) / 2**20


@dataclass(frozen=True)
class StartUp:
    namespaces: int
    seconds: float
    """From process start to /readyz 200."""


def time_to_ready(workdir: Path, namespaces: int) -> StartUp:
    """Start `egress-guard serve` against a local API server with `namespaces` namespaces (every
    tenth enforcing) and time it to ready."""
    sys.path.insert(0, str(TESTS))
    local_apiserver = importlib.import_module("local_apiserver")
    with local_apiserver.LocalApiServer(max_lifetime_s=600) as api:
        api.seed(
            *(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": f"team-{index:05d}",
                        "labels": {"egress-guard.io/mode": "enforce"} if index % 10 == 0 else {},
                    },
                }
                for index in range(namespaces)
            )
        )
        kubeconfig = api.kubeconfig(workdir / "kubeconfig-startup")
        port = _free_port()
        command = [
            *(sys.executable, "-m", "webhook", "serve", "--cluster", "kubeconfig"),
            *("--config", str(workdir / "policy.yaml"), "--cert-dir", str(workdir / "certs")),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ]
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        context = ssl.create_default_context(cafile=str(workdir / "certs" / "ca.crt"))
        started = time.monotonic()
        with (workdir / "startup.log").open("wb") as log:
            process = subprocess.Popen(
                command, env=env, stdout=log, stderr=log, start_new_session=True
            )
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError("the server exited during start-up")
                if time.monotonic() - started > 120:
                    raise RuntimeError("not ready in 120 s")
                with contextlib.suppress(OSError):
                    url = f"https://127.0.0.1:{port}/readyz"
                    with urllib.request.urlopen(url, context=context, timeout=2) as reply:
                        if reply.status == 200:
                            break
                time.sleep(0.05)
            return StartUp(namespaces, time.monotonic() - started)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
