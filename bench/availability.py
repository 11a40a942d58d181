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
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.cluster import TESTS
from bench.procstat import children, rss_bytes


@contextlib.contextmanager
def stalled_connections(port: int, ca: Path, count: int) -> Iterator[int]:
    """`count` connections left stalled against the server until the block ends (re-opened when
    the server closes them at their deadline, so that `count` stall throughout)."""
    context = ssl.create_default_context(cafile=str(ca))
    opened: list[socket.socket] = []

    def one(kind: int) -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        if kind == 0:
            return raw  # nothing at all
        if kind == 1:
            raw.sendall(b"\x16\x03\x01")  # one byte short of anything
            return raw
        sock = context.wrap_socket(raw, server_hostname="localhost")
        if kind == 2:
            sock.sendall(b"POST /validate HTTP/1.1\r\nHost: egress-guard\r\nContent-Ty")
        else:
            sock.sendall(
                b"POST /validate HTTP/1.1\r\nHost: egress-guard\r\n"
                b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
            )
        return sock

    done = threading.Event()

    def keep_stalling() -> None:
        """Replace every connection the server closed (at its deadline) with a new one."""
        while not done.wait(0.25):
            readable, _, _ = select.select(opened, [], [], 0)
            for sock in readable:
                index = opened.index(sock)
                with contextlib.suppress(OSError):
                    sock.close()
                with contextlib.suppress(OSError):
                    opened[index] = one(index % 4)

    for index in range(count):
        opened.append(one(index % 4))
    keeper = threading.Thread(target=keep_stalling, daemon=True)
    keeper.start()
    try:
        yield len(opened)
    finally:
        done.set()
        keeper.join(5)
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.close()


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
