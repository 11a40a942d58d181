"""SIGTERM under load, as in a rolling update: no review is lost.

Two servers stand for the old and the new pod behind one Service. The client holds keep-alive
connections to the old one, which receives SIGTERM mid-load; new connections that the old pod no
longer accepts go to the next address, as the API server's do once the endpoint is gone.
"""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import PROFILE, pod, review_document, workload
from review_load import ReviewLoad, closed_by_peer
from running_server import RunningServer, running_server

pytestmark = pytest.mark.e2e

EXIT_DEADLINE_S = 15.0


def review(uid: str) -> Any:
    return review_document(workload("Deployment", {PROFILE: "stripe"}), uid=uid)


def start_partial_review(server: RunningServer, uid: str) -> tuple[ssl.SSLSocket, bytes]:
    """A review whose headers and first half of body are on the wire: a request in flight."""
    body = orjson.dumps(review_document(pod({PROFILE: "none"}), uid=uid))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    tls = server.tls_context().wrap_socket(raw, server_hostname="127.0.0.1")
    head = (
        f"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    half = len(body) // 2
    tls.sendall(head + body[:half])
    return tls, body[half:]


def read_response(tls: ssl.SSLSocket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = tls.recv(65536)
        assert chunk, "connection closed in the middle of an answer"
        body += chunk
    return int(head.split(b" ")[1]), orjson.loads(body)


def test_sigterm_under_load_loses_no_review(tmp_path: Path) -> None:
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    with running_server(old_dir, workers=2) as old:
        shutil.copytree(old.cert_dir, new_dir / "certs")  # one CA, as behind one Service
        with running_server(new_dir, workers=1) as new:
            idle = old.connection()
            assert old.post(idle, "/validate", review("idle-before"))[0] == 200

            load = ReviewLoad([old.port, new.port], old.tls_context(), review, threads=4)
            load.start()
            load.wait_for_answers(80)
            in_flight, rest = start_partial_review(old, "in-flight")

            sent_at = time.monotonic()
            old.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(ConnectionRefusedError):  # new connections refused, not queued
                socket.create_connection(("127.0.0.1", old.port), timeout=2)
            in_flight.sendall(rest)  # the rest of a request begun before SIGTERM
            status, answer = read_response(in_flight)
            in_flight.close()

            exit_code = old.process.wait(timeout=EXIT_DEADLINE_S)
            exit_seconds = time.monotonic() - sent_at
            load.wait_for_answers(load.answered() + 80)
            stats = load.stop()
            idle_was_closed = closed_by_peer(idle)
            idle.close()
            old_log = old.log()

    print(
        f"sigterm: {stats.answered} reviews ({stats.answered_by_port.get(old.port, 0)} by the "
        f"old server), {len(stats.failures)} failures, {stats.idle_close_retries} idle-close "
        f"retries, {stats.connect_fallbacks} connection attempts refused; old server exited "
        f"in {exit_seconds:.1f} s"
    )
    assert stats.failures == []
    assert (status, answer["response"]["uid"]) == (200, "in-flight")
    assert exit_code == 0
    assert exit_seconds < EXIT_DEADLINE_S
    assert idle_was_closed  # idle keep-alive connections are closed, not left to time out
    assert stats.answered_by_port.get(old.port, 0) > 0
    assert stats.answered_by_port.get(new.port, 0) > 0
    for problem in ("Traceback", "WORKER TIMEOUT", "SIGKILL", '"level":"error"'):
        assert problem not in old_log
