"""Stalled connections never keep a review from being answered.

Any pod may connect to the webhook's Service. Connections that stall (one byte of a TLS
handshake, half a request's headers, a body that never finishes, nothing at all) are read in the
worker's loop against deadlines and never hold one of the threads that answer reviews
(serving/request_intake.py). Run against the real server as deployed: 2 workers of 2 threads.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
from builders import PROFILE, review_document, workload
from running_server import RunningServer, peak_rss_mib, running_server, worker_pids
from stalled_clients import stalled_connection, stalled_connections

from webhook.serving.request_intake import (
    BODY_TIMEOUT_S,
    HANDSHAKE_TIMEOUT_S,
    HEADER_TIMEOUT_S,
    MAX_BUFFERED_BYTES,
)

pytestmark = pytest.mark.e2e

STALLED_PER_KIND = 50
REVIEWS = 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("slow"), workers=2) as running:
        yield running


def tcp(server: RunningServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def tls(server: RunningServer) -> ssl.SSLSocket:
    return server.tls_context().wrap_socket(tcp(server), server_hostname="localhost")


def timed_reviews(server: RunningServer, count: int) -> list[float]:
    """Seconds per review over one kept-alive connection, as the API server sends them."""
    document = review_document(workload("Deployment", {PROFILE: "none"}), namespace="payments")
    latencies: list[float] = []
    with contextlib.closing(server.connection(timeout=5)) as conn:
        for _ in range(count):
            started = time.perf_counter()
            status, body = server.post(conn, "/validate", document)
            latencies.append(time.perf_counter() - started)
            assert status == 200 and body["response"]["uid"]
    return latencies


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed (or reset) the connection."""
    sock.settimeout(0.5)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_reviews_are_answered_while_200_connections_stall(server: RunningServer) -> None:
    with stalled_connections(server.port, server.ca_file, 4 * STALLED_PER_KIND) as count:
        latencies = timed_reviews(server, REVIEWS)
        p99 = statistics.quantiles(latencies, n=100)[98]
        assert p99 < 0.050, f"p99 {p99 * 1000:.1f} ms with {count} stalled connections"
        fresh_started = time.perf_counter()
        status, _ = server.send("/validate", review_document(workload("Pod"), uid="fresh"))
        assert status == 200
        assert time.perf_counter() - fresh_started < 1.0, "a new connection is answered too"


def test_stalled_connections_are_closed_at_their_deadline(server: RunningServer) -> None:
    stalled = [
        stalled_connection(server.port, server.ca_file, kind)
        for _ in range(STALLED_PER_KIND)
        for kind in range(4)
    ]
    try:
        time.sleep(max(HANDSHAKE_TIMEOUT_S, HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + 1.5)
        still_open = [s for s in stalled if not closed_by_server(s)]
        assert not still_open, f"{len(still_open)} of {len(stalled)} stalled connections open"
    finally:
        for sock in stalled:
            sock.close()


def test_a_request_sent_in_pieces_within_the_deadlines_is_answered(
    server: RunningServer,
) -> None:
    body = orjson.dumps(review_document(workload("Pod"), uid="pieces"))
    request = (
        b"POST /validate HTTP/1.1\r\nHost: egress-guard\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with contextlib.closing(tls(server)) as sock:
        for start in range(0, len(request), 300):
            sock.sendall(request[start : start + 300])
            time.sleep(0.01)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")


def test_two_requests_in_one_write_are_both_answered(server: RunningServer) -> None:
    bodies = [orjson.dumps(review_document(workload("Pod"), uid=f"p{i}")) for i in range(2)]
    requests = b"".join(
        b"POST /validate HTTP/1.1\r\nHost: egress-guard\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
        for body in bodies
    )
    with contextlib.closing(tls(server)) as sock:
        sock.sendall(requests)
        answers = b""
        deadline = time.monotonic() + 5
        while not (b'"uid":"p0"' in answers and b'"uid":"p1"' in answers):
            assert time.monotonic() < deadline, answers
            answers += sock.recv(65536)
        assert answers.count(b"HTTP/1.1 200") == 2


def test_an_oversized_body_is_refused_from_its_headers(server: RunningServer) -> None:
    with contextlib.closing(tls(server)) as sock:
        sock.sendall(
            b"POST /validate HTTP/1.1\r\nHost: egress-guard\r\n"
            b"Content-Type: application/json\r\nContent-Length: 999999999\r\n\r\n"
        )
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413")


# --- what an independent review tried, each held off ------------------------------------------


def request_bytes(uid: str, **headers: str) -> bytes:
    body = orjson.dumps(review_document(workload("Pod"), uid=uid))
    lines = {"Host": "egress-guard", "Content-Type": "application/json"}
    lines.update(headers or {"Content-Length": str(len(body))})
    head = "".join(f"{k}: {v}\r\n" for k, v in lines.items())
    return f"POST /validate HTTP/1.1\r\n{head}\r\n".encode() + body


def p99_ms(server: RunningServer, count: int = 100) -> float:
    return statistics.quantiles(timed_reviews(server, count), n=100)[98] * 1000


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One worker of two threads: an attack need not guess which worker takes a connection."""
    with running_server(tmp_path_factory.mktemp("single"), workers=1) as running:
        yield running


def test_clients_that_never_read_their_answers_hold_no_thread(single: RunningServer) -> None:
    server = single
    wide = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "wide", "labels": {PROFILE: "none"}},
        "spec": {"containers": [{"name": f"c{i}", "image": "x"} for i in range(128)]},
    }
    body = orjson.dumps(review_document(wide, namespace="legacy", uid="unread"))
    one = (
        b"POST /mutate HTTP/1.1\r\nHost: egress-guard\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    pipelined = one * 400  # each answer a ~150 KB patch: far beyond any socket buffer

    def flood() -> None:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: kept
        raw.settimeout(12)
        raw.connect(("127.0.0.1", server.port))
        sock = server.tls_context().wrap_socket(raw, server_hostname="localhost")
        with contextlib.suppress(OSError):
            sock.sendall(pipelined)
            time.sleep(8)  # holding the connection, reading nothing
        sock.close()

    floods = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
    for thread in floods:
        thread.start()
    time.sleep(5)  # by now every socket buffer between them is full
    try:
        assert p99_ms(server, 50) < 50
    finally:
        for thread in floods:
            thread.join(20)


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Length": "0000000000000000000100"},  # a length the parser reads, unsent
        {"Content-Length": "100"},
    ],
    ids=["leading-zeros", "body-never-sent"],
)
def test_a_body_announced_and_never_sent_holds_no_thread(
    server: RunningServer, headers: dict[str, str]
) -> None:
    head = request_bytes("short", **headers).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    stalled = []
    for _ in range(8):
        sock = server.tls_context().wrap_socket(
            socket.create_connection(("127.0.0.1", server.port), timeout=5),
            server_hostname="localhost",
        )
        sock.sendall(head)
        stalled.append(sock)
    try:
        assert p99_ms(server) < 50
    finally:
        for sock in stalled:
            sock.close()


def test_bodies_held_by_the_loop_stay_within_its_budget(server: RunningServer) -> None:
    """Dozens of clients each sending nearly the largest body, slowly enough to keep it open:
    the worker keeps at most MAX_BUFFERED_BYTES of them and drops the rest."""
    almost = 6 * 1024 * 1024 - 1
    head = (
        b"POST /validate HTTP/1.1\r\nHost: egress-guard\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {almost + 1}\r\n\r\n".encode()
    )
    chunk = b" " * (1024 * 1024)

    def heavy() -> None:
        with contextlib.suppress(OSError):
            sock = server.tls_context().wrap_socket(
                socket.create_connection(("127.0.0.1", server.port), timeout=5),
                server_hostname="localhost",
            )
            sock.sendall(head)
            for _ in range(5):
                sock.sendall(chunk)
            sock.sendall(chunk[:-1])  # one byte short: the request never completes
            time.sleep(3)
            sock.close()

    senders = [threading.Thread(target=heavy, daemon=True) for _ in range(48)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(30)
    workers = worker_pids(server.process.pid)
    peaks = [peak_rss_mib(pid) for pid in workers]
    assert max(peaks) < MAX_BUFFERED_BYTES / 2**20 + 120, peaks
    assert p99_ms(server, 20) < 50


def test_a_full_worker_still_accepts_the_api_server(single: RunningServer) -> None:
    """A thousand connections that never send a byte fill every slot a worker has: it closes
    the oldest of them to let a new one in, rather than stop accepting."""
    silent = [socket.create_connection(("127.0.0.1", single.port), timeout=5) for _ in range(1000)]
    try:
        time.sleep(0.5)
        started = time.monotonic()
        status, _ = single.send("/validate", review_document(workload("Pod"), uid="late"))
        assert status == 200
        assert time.monotonic() - started < 1.0
    finally:
        for sock in silent:
            sock.close()
