"""A load client that speaks to egress-guard as the API server's webhook client does.

Each thread keeps one HTTPS keep-alive connection and sends AdmissionReviews back to back. Like
Go's HTTP transport it never sends on a pooled connection the server has already closed (it checks
for a pending EOF first), and when a connection cannot be opened it tries the next address in
turn, as the API server does across a Service's endpoints. Everything else counts as a failure: an
error after the request was sent, a status other than 200, or a response for another uid.

The one retry it allows is the race the API server's client also retries: a request written on a
kept-alive connection that the server closed in the same instant, answered by nothing at all. Those
are counted apart (`idle_close_retries`) so a test can report them.
"""

from __future__ import annotations

import http.client
import itertools
import select
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

CONNECT_ERRORS = (ConnectionRefusedError, ConnectionResetError, ssl.SSLError, TimeoutError)


@dataclass
class LoadStats:
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    connections_opened: int = 0
    connect_fallbacks: int = 0
    idle_close_retries: int = 0
    answered_by_port: dict[int, int] = field(default_factory=dict)

    def merge(self, other: LoadStats) -> None:
        self.answered += other.answered
        self.failures += other.failures
        self.connections_opened += other.connections_opened
        self.connect_fallbacks += other.connect_fallbacks
        self.idle_close_retries += other.idle_close_retries
        for port, count in other.answered_by_port.items():
            self.answered_by_port[port] = self.answered_by_port.get(port, 0) + count


class _ConnectionClosed(Exception):
    """The server closed a kept-alive connection before any byte of an answer came back."""


def closed_by_peer(conn: http.client.HTTPSConnection) -> bool:
    """Whether an idle pooled connection has a pending EOF or close_notify (Go checks the same)."""
    sock = conn.sock
    if sock is None:
        return True
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


class ReviewLoad:
    """Threads sending reviews to `ports` (tried in order for new connections) until stopped."""

    def __init__(
        self,
        ports: Sequence[int],
        context: ssl.SSLContext,
        document: Callable[[str], Any],
        *,
        threads: int = 3,
        path: str = "/validate",
        max_seconds: float = 30.0,
        pause_s: float = 0.0,
    ) -> None:
        self.ports = list(ports)
        self._context = context
        self._document = document
        self._path = path
        self._threads_count = threads
        self._deadline = time.monotonic() + max_seconds
        self._pause_s = pause_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stats = [LoadStats() for _ in range(threads)]
        self._uids = itertools.count()

    def _connect(self, stats: LoadStats) -> tuple[http.client.HTTPSConnection, int]:
        last: Exception | None = None
        for attempt in range(40):
            port = self.ports[min(attempt, len(self.ports) - 1)]
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=self._context, timeout=10)
            try:
                conn.connect()
            except CONNECT_ERRORS as err:  # nothing was sent: another address may answer
                conn.close()
                last = err
                stats.connect_fallbacks += 1
                time.sleep(0.02)
                continue
            stats.connections_opened += 1
            return conn, port
        raise RuntimeError(f"no address accepted a connection: {last!r}")

    def _send(self, conn: http.client.HTTPSConnection, uid: str, reused: bool) -> Any:
        body = orjson.dumps(self._document(uid))
        try:
            conn.request(
                "POST", self._path, body=body, headers={"Content-Type": "application/json"}
            )
            reply = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as err:
            if reused:
                raise _ConnectionClosed(str(err)) from err
            raise
        data = reply.read()
        if reply.status != 200:
            raise AssertionError(f"HTTP {reply.status}: {data[:200]!r}")
        answer = orjson.loads(data)
        if answer["response"]["uid"] != uid:
            raise AssertionError(f"answer for {answer['response']['uid']}, not {uid}")
        if reply.will_close:
            conn.close()
        return answer

    def _run(self, index: int) -> None:
        stats = self._stats[index]
        conn: http.client.HTTPSConnection | None = None
        port = 0
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            uid = f"load-{index}-{next(self._uids)}"
            reused = conn is not None and conn.sock is not None
            if reused and conn is not None and closed_by_peer(conn):
                conn.close()
                reused = False
            try:
                if conn is None or conn.sock is None:
                    conn, port = self._connect(stats)
                try:
                    self._send(conn, uid, reused)
                except _ConnectionClosed:
                    stats.idle_close_retries += 1
                    conn.close()
                    conn, port = self._connect(stats)
                    self._send(conn, uid, reused=False)
                stats.answered += 1
                stats.answered_by_port[port] = stats.answered_by_port.get(port, 0) + 1
            except Exception as err:  # every other outcome is a lost review
                stats.failures.append(f"{uid}: {err!r}")
                if conn is not None:
                    conn.close()
                conn = None
            if self._pause_s:
                self._stop.wait(self._pause_s)
        if conn is not None:
            conn.close()

    def start(self) -> ReviewLoad:
        for index in range(self._threads_count):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def answered(self) -> int:
        return sum(s.answered for s in self._stats)

    def wait_for_answers(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.answered() < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.answered() >= count, f"only {self.answered()} reviews answered"

    def stop(self) -> LoadStats:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        total = LoadStats()
        for stats in self._stats:
            total.merge(stats)
        return total
