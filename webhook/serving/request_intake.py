"""Threads answer whole requests and never wait on a client; the loop waits, against deadlines.

gunicorn's gthread worker hands a connection to a thread as soon as it is readable; the thread
then completes the TLS handshake, reads the request and writes the answer with blocking calls.
The webhook's Service is reachable from every pod and nothing authenticates callers, so a few
connections that send one byte of a handshake, half a request's headers, or never read their
answers hold every thread and leave the API server's reviews unanswered past its timeout, which
in an enforcing namespace refuses every deploy.

Here the worker's main loop (one selector, no thread per connection) does all the waiting:

- it completes the TLS handshake (within `HANDSHAKE_TIMEOUT_S`) and reads the request head
  (within `HEADER_TIMEOUT_S` of its first byte) and body (within `BODY_TIMEOUT_S` of the head),
  as Go servers do with `ReadHeaderTimeout`, and closes whoever misses a deadline;
- a body announced larger than the limit is refused from its head (413), a chunked body too
  (411: the API server always sends Content-Length), both answered from the loop;
- only a whole request reaches a thread, on a socket that never blocks: a read past the request
  fails at once, and an answer the client does not take is handed back to the loop, which sends
  it within `IO_TIMEOUT_S` (or closes) before reading the connection's next request;
- what the loop holds is bounded: `MAX_BUFFERED_BYTES` of request bytes per worker, and when the
  worker's connections are all in use the oldest idle (then the oldest unfinished) one is closed
  so that a new one, the API server's, can always be accepted.

Stalled connections cost a file descriptor and a few kilobytes, never a thread.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import re
import selectors
import socket
import ssl
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

from gunicorn import http, util
from gunicorn import sock as gunicorn_sock
from gunicorn.workers.gthread import TConn, ThreadWorker

from webhook.config.settings import DEFAULT_MAX_BODY_BYTES
from webhook.http.logs import log_refusal

HANDSHAKE_TIMEOUT_S = 3.0
HEADER_TIMEOUT_S = 3.0
"""From the first byte of a request to the end of its headers (Go's ReadHeaderTimeout)."""
BODY_TIMEOUT_S = 5.0
"""From the end of the headers to the end of the body: the API server's longest webhook timeout
is 30 s, egress-guard's are 5 s, so a body still arriving after 5 s is answered too late."""
IO_TIMEOUT_S = 10.0
"""For the loop to send an answer the client is slow to take."""
MAX_HEAD_BYTES = 64 * 1024
"""Request line and headers; the API server sends a few hundred bytes."""
MAX_BUFFERED_BYTES = 64 * 1024 * 1024
"""Request bytes one worker holds for unfinished requests, all connections together."""
MAX_UNSENT_BYTES = 1024 * 1024
"""An answer held for a slow reader (answers are at most a few hundred kilobytes)."""
ROOM = 16
"""Connections kept free so the API server can always connect."""
RECV_BYTES = 256 * 1024

_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d+)[ \t]*\r\n", re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding[ \t]*:", re.IGNORECASE)
_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)


def _refusal(status: str, error: str) -> bytes:
    body = b'{"error": "' + error.encode() + b'"}'
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_REASONS = {
    411: "send the body with a Content-Length",
    413: "the body is larger than the limit",
}
_REFUSALS = {
    411: _refusal("411 Length Required", _REASONS[411]),
    413: _refusal("413 Content Too Large", _REASONS[413]),
}


class _Nonblocking:
    """What both socket kinds below add: they never block a thread, and send a response's head
    together with the first part of its body (gunicorn writes the two separately: a TLS record,
    its encryption and a system call more per review)."""

    held = b""
    """A response head, sent with what follows it."""
    unsent = b""
    """An answer the client did not take at once: the loop sends it."""

    def setblocking(self, flag: bool) -> None:
        super().setblocking(False)  # type: ignore[misc]

    def sendall(self, data: Any, flags: int = 0) -> None:
        data = bytes(data)
        if not self.held and not self.unsent and data[-4:] == _HEAD_END and data[:5] == b"HTTP/":
            self.held = data
            return
        if self.held:
            data, self.held = self.held + data, b""
        if self.unsent:
            if len(self.unsent) + len(data) > MAX_UNSENT_BYTES:
                raise ConnectionError(errno.ECONNABORTED, "the client does not read its answers")
            self.unsent += data
            return
        try:
            sent = self.send(data)  # type: ignore[attr-defined]
        except _WOULD_BLOCK:
            sent = 0
        if sent < len(data):
            self.unsent = data[sent:]

    def flush(self) -> None:
        """Send a response head held without a body (or hand it to the loop)."""
        if self.held:
            data, self.held = self.held, b""
            self.sendall(data)

    def drain(self) -> bool:
        """Send what the client did not take yet; True once everything is out."""
        while self.unsent:
            try:
                sent = self.send(self.unsent)  # type: ignore[attr-defined]
            except _WOULD_BLOCK:
                return False
            self.unsent = self.unsent[sent:]
        return True


class IntakeSSLSocket(_Nonblocking, ssl.SSLSocket):
    pass


class IntakeSocket(_Nonblocking, socket.socket):
    """Plain TCP (a server without TLS, in tests)."""


def head_framing(buffer: bytes | bytearray, head: int) -> int | None:
    """The body's length from Content-Length (0 without one); None for a body with a
    Transfer-Encoding (chunked), which the loop refuses."""
    if _TRANSFER_ENCODING.search(buffer, 0, head):
        return None
    found = _CONTENT_LENGTH.search(buffer, 0, head)
    return int(found.group(1)) if found else 0


class IntakeConn(TConn):  # type: ignore[misc]
    """A connection and what has been received of its next request."""

    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.received: bytes | bytearray = b""
        self.handshaken = not cfg.is_ssl
        self.head: int | None = None
        self.body: int | None = None
        self.deadline: float | None = time.monotonic() + HANDSHAKE_TIMEOUT_S
        """None while nothing is awaited: set when the loop starts waiting for more bytes of
        this step, so a request read whole at once costs no clock reading."""
        self.request: bytes = b""
        self.order = 0
        """When it was taken in, for choosing whom to close when the worker is full."""
        self.finished: Future[Any] | None = None
        """A thread's outcome, kept while the loop sends the answer."""

    def init(self) -> None:
        """In the thread: the socket is already wrapped and handshaken; the parser reads the
        buffered request, and the socket (which never blocks) for nothing else."""
        if self.parser is None:
            self.parser: Any = http.get_parser(self.cfg, self.sock, self.client)
        self.initialized = True
        if self.request:
            self.parser.unreader.unread(self.request)
            self.request = b""

    def close(self, graceful: bool = False) -> None:
        """Closed from the loop: never gunicorn's graceful close, which waits up to 2 s for the
        client in the loop's own thread (the answer was sent before this)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        util.close(self.sock)

    def start_request(self) -> None:
        """A kept-alive connection became readable: its next request begins."""
        self.head = self.body = self.deadline = None

    def add(self, data: bytes) -> None:
        """Keep received bytes: the first chunk as it is (no copy), more in one growing buffer
        (never copied again per chunk, whatever a client sends in small pieces)."""
        if not self.received:
            self.received = data
        else:
            if isinstance(self.received, bytes):
                self.received = bytearray(self.received)
            self.received += data

    def waiting(self, now: float) -> None:
        """The loop waits for more of this step: its deadline runs from now, once."""
        if self.deadline is None:
            self.deadline = now + (HEADER_TIMEOUT_S if self.head is None else BODY_TIMEOUT_S)

    def complete(self, max_body_bytes: int) -> bool | int:
        """Whether `received` holds a whole request (then moved to `request`), or the status
        to refuse it with from its head alone (411, 413)."""
        received = self.received
        if self.head is None:
            end = received.find(_HEAD_END)
            if end < 0:
                if len(received) > MAX_HEAD_BYTES:
                    raise ValueError("request head too large")
                return False
            self.head = end + len(_HEAD_END)
            self.body = head_framing(received, self.head)
            if self.body is None:
                return 411
            if self.body > max_body_bytes:
                return 413
            self.deadline = None  # the body's own deadline starts when it is waited for
        total = self.head + (self.body or 0)
        if len(received) < total:
            return False
        if total == len(received):  # the usual case: nothing of a next request yet
            self.request, self.received = bytes(received), b""
        else:
            self.request, self.received = bytes(received[:total]), received[total:]
        return True


class IntakeThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread worker that gives its threads only whole requests (see the module docstring)."""

    max_body_bytes = DEFAULT_MAX_BODY_BYTES
    """The largest body a request may announce and still be read (the app's limit)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.intake: set[IntakeConn] = set()
        self.flushing: set[IntakeConn] = set()
        self.buffered = 0
        self._order = itertools.count()

    # connections coming in

    def accept(self, listener: Any) -> None:
        try:
            raw, address = listener.accept()
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        raw.setblocking(False)
        try:
            wrapped = self._wrap(raw)
        except (OSError, ssl.SSLError):
            self.nr_conns -= 1
            raw.close()
            return
        conn = IntakeConn(self.cfg, wrapped, address, listener.getsockname())
        self._take_in(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
        self._advance(conn)
        self._make_room()

    def _wrap(self, raw: socket.socket) -> Any:
        if not self.cfg.is_ssl:
            plain = IntakeSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
            plain.setblocking(False)
            return plain
        context = gunicorn_sock.ssl_context(self.cfg)
        if context.sslsocket_class is not IntakeSSLSocket:
            context.sslsocket_class = IntakeSSLSocket  # this server's own context
        return context.wrap_socket(
            raw, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=True
        )

    def _take_in(self, conn: IntakeConn) -> None:
        """The connection's next request is read in the loop; its bytes count against the
        worker's budget while it is (and only then)."""
        conn.order = next(self._order)
        self.intake.add(conn)
        self.buffered += len(conn.received)

    def _readable(self, conn: IntakeConn, _sock: Any) -> None:
        self._advance(conn)

    def on_client_socket_readable(self, conn: IntakeConn, client: Any) -> None:
        """A kept-alive connection's next request: read in the loop too, never in a thread.
        The socket stays registered with this callback until the request is whole."""
        if conn not in self.intake:
            self.keepalived_conns.remove(conn)
            conn.start_request()
            self._take_in(conn)
        self._advance(conn)

    def _advance(self, conn: IntakeConn) -> None:
        """Move the connection's handshake and request on as far as the bytes in allow."""
        try:
            if not conn.handshaken:
                try:
                    conn.sock.do_handshake()
                except ssl.SSLWantReadError:
                    self._wait_for(conn, selectors.EVENT_READ)
                    return
                except ssl.SSLWantWriteError:
                    self._wait_for(conn, selectors.EVENT_WRITE)
                    return
                conn.handshaken = True
                conn.start_request()
                conn.waiting(time.monotonic())  # a request must follow the handshake
                self._wait_for(conn, selectors.EVENT_READ)
            # Read until the request is whole, and not once more: a read that finds nothing
            # costs a system call and an exception on every review.
            while True:
                try:
                    data = conn.sock.recv(RECV_BYTES)
                except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                    conn.waiting(time.monotonic())
                    self._wait_for(conn, selectors.EVENT_READ)
                    return
                except ssl.SSLWantWriteError:
                    self._wait_for(conn, selectors.EVENT_WRITE)
                    return
                if not data:
                    self._drop(conn)
                    return
                before = len(conn.received)
                conn.add(data)
                self.buffered += len(conn.received) - before
                if self.buffered > MAX_BUFFERED_BYTES:
                    raise MemoryError("the worker holds too many unfinished requests")
                done = conn.complete(self.max_body_bytes)
                if done is True:
                    self._dispatch(conn)
                    return
                if done:
                    self._refuse(conn, done)
                    return
        except (OSError, ssl.SSLError, ValueError, MemoryError):
            self._drop(conn)

    def _wait_for(self, conn: IntakeConn, events: int) -> None:
        key = self.poller.get_key(conn.sock)
        if key.events != events:
            self.poller.modify(conn.sock, events, key.data)

    def _release(self, conn: IntakeConn) -> None:
        """The connection leaves the intake: its bytes no longer count against the budget."""
        self.intake.discard(conn)
        self.buffered -= len(conn.received) + len(conn.request)

    def _dispatch(self, conn: IntakeConn) -> None:
        self._release(conn)
        self.poller.unregister(conn.sock)
        conn.data_ready = True
        self.enqueue_req(conn)

    def _refuse(self, conn: IntakeConn, status: int) -> None:
        """Answer from the loop (the reply fits any socket buffer) and close."""
        if status in _REFUSALS:
            with contextlib.suppress(OSError, ssl.SSLError):
                conn.sock.send(_REFUSALS[status])
            line = bytes(conn.received[: conn.received.find(b"\r\n")])
            log_refusal(
                line.partition(b" ")[2].partition(b" ")[0].decode("latin-1"),
                status,
                _REASONS[status],
            )
        self._drop(conn)

    def _drop(self, conn: IntakeConn) -> None:
        if conn in self.intake:
            self._release(conn)
        self.flushing.discard(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    # answers going out

    def handle_request(self, req: Any, conn: IntakeConn) -> Any:
        """gunicorn's, then a response head still held is sent."""
        try:
            return super().handle_request(req, conn)
        finally:
            flush = getattr(conn.sock, "flush", None)
            if flush is not None:
                with contextlib.suppress(OSError):
                    flush()

    def finish_request(self, conn: IntakeConn, fs: Any) -> None:
        """After a thread's answer: what the client did not take is sent from the loop before
        anything else; a request already received whole (pipelined) goes straight back to a
        thread; anything partial is read in the loop like any other."""
        if getattr(conn.sock, "unsent", b""):
            conn.finished = fs
            conn.deadline = time.monotonic() + IO_TIMEOUT_S
            self.flushing.add(conn)
            self.poller.register(conn.sock, selectors.EVENT_WRITE, partial(self._writable, conn))
            return
        keep = not fs.cancelled() and fs.exception() is None and fs.result()
        if conn.received and keep is True and self.alive:
            conn.start_request()
            try:
                done = conn.complete(self.max_body_bytes)
            except ValueError:
                done = 400
            if done is True:
                self.enqueue_req(conn)
                return
            if done:
                self._refuse(conn, done)
                return
        super().finish_request(conn, fs)

    def _writable(self, conn: IntakeConn, _sock: Any) -> None:
        try:
            if not conn.sock.drain():
                return
        except (OSError, ssl.SSLError):
            self._drop(conn)
            return
        self.flushing.discard(conn)
        self.poller.unregister(conn.sock)
        finished, conn.finished = conn.finished, None
        self.finish_request(conn, finished)

    # bounds

    def murder_pending(self) -> None:
        """Close the connections past a deadline, and make room for new ones."""
        super().murder_pending()
        if self.intake or self.flushing:
            now = time.monotonic()
            late = [
                c
                for c in (*self.intake, *self.flushing)
                if c.deadline is not None and c.deadline <= now
            ]
            for conn in late:
                self._drop(conn)
        self._make_room()

    def _make_room(self) -> None:
        """When nearly every connection the worker may hold is in use, close the oldest idle
        one (the client reconnects when it has something to send), else the oldest unfinished
        one: a new connection, the API server's, is always accepted."""
        while self.nr_conns > self.worker_connections - ROOM:
            if self.keepalived_conns:
                self._drop(self.keepalived_conns.popleft())
            elif self.intake:
                self._drop(min(self.intake, key=lambda c: c.order))
            else:
                return

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wake in time for the nearest deadline (at most `timeout`)."""
        if self.intake or self.flushing:
            deadlines = [
                c.deadline for c in (*self.intake, *self.flushing) if c.deadline is not None
            ]
            if deadlines:
                timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)
