"""Start the real `egress-guard serve` (gunicorn over TLS) on a free loopback port, for tests.

The server is the one users run: same command, same gunicorn configuration, generated
certificates. Tests speak to it as the API server does: HTTPS, HTTP/1.1 keep-alive, trusting only
the generated CA.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    cert_dir: Path
    log_path: Path

    @property
    def ca_file(self) -> Path:
        return self.cert_dir / "ca.crt"

    def tls_context(self) -> ssl.SSLContext:
        """A client context trusting only the server's generated CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def connection(self, timeout: float = 10.0) -> http.client.HTTPSConnection:
        """A keep-alive HTTPS connection, as the API server holds one."""
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.tls_context(), timeout=timeout
        )

    def post(self, conn: http.client.HTTPSConnection, path: str, document: Any) -> tuple[int, Any]:
        body = orjson.dumps(document)
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        data = reply.read()
        return reply.status, orjson.loads(data) if data else None

    def send(self, path: str, document: Any) -> tuple[int, Any]:
        """One review on a connection of its own."""
        with contextlib.closing(self.connection()) as conn:
            return self.post(conn, path, document)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_until_healthy(server: RunningServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"egress-guard serve exited early:\n{server.log()}")
        try:
            with contextlib.closing(server.connection(timeout=2.0)) as conn:
                conn.request("GET", "/healthz")
                reply = conn.getresponse()
                reply.read()
                if reply.status == 200:
                    return
        except (OSError, http.client.HTTPException) as err:
            last_error = err
        time.sleep(0.1)
    raise RuntimeError(f"egress-guard serve not healthy in time ({last_error}):\n{server.log()}")


@contextlib.contextmanager
def running_server(
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[RunningServer]:
    """Run `egress-guard serve --cluster none` (unless args say otherwise) until the block ends."""
    port = free_port()
    cert_dir = workdir / "certs"
    log_path = workdir / "serve.log"
    command: Sequence[str] = [
        sys.executable,
        "-m",
        "webhook",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--cert-dir",
        str(cert_dir),
        "--workers",
        str(workers),
        *(args if "--cluster" in args else ("--cluster", "none", *args)),
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=workdir,
            start_new_session=True,
        )
    server = RunningServer(process, port, cert_dir, log_path)
    try:
        _wait_until_healthy(server)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers of a master process."""
    pids: list[int] = []
    for task in Path(f"/proc/{master}/task").glob("*"):
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def rss_bytes(pid: int) -> int:
    """Resident memory of a process now."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a process so far (VmHWM), MiB."""
    return _status_kib(pid, "VmHWM") / 1024
