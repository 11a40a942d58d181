"""Requests are read whole before a thread takes them, each step against a deadline.

gunicorn's gthread worker hands a connection to a thread as soon as it is readable; the thread
then completes the TLS handshake and reads the request with blocking calls and no deadline. The
webhook's Service is reachable from every pod and nothing authenticates callers, so a handful of
connections that send one byte of a handshake, or half a request's headers, hold every thread and
leave the API server's reviews unanswered past its timeout, which in an enforcing namespace
refuses every deploy.

Here the worker's main loop (one selector, no thread per connection) does the handshake and reads
the request line, the headers and the body without blocking, as Go servers do with
`ReadHeaderTimeout`: a connection must finish its handshake within `HANDSHAKE_TIMEOUT_S`, its
request head within `HEADER_TIMEOUT_S` of its first byte and its body within `BODY_TIMEOUT_S`,
or it is closed. Only a connection whose whole request is buffered reaches a thread, and there
every socket operation has a deadline too (`IO_TIMEOUT_S`: a client that stops reading the
answer). Stalled connections cost a file descriptor and a few kilobytes, never a thread.
"""

from __future__ import annotations

import contextlib
import errno
import re
import selectors
import socket
import ssl
import struct
import time
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn import sock as gunicorn_sock
from gunicorn.workers.gthread import TConn, ThreadWorker

from webhook.config.settings import DEFAULT_MAX_BODY_BYTES

HANDSHAKE_TIMEOUT_S = 3.0
HEADER_TIMEOUT_S = 3.0
"""From the first byte of a request to the end of its headers (Go's ReadHeaderTimeout)."""
BODY_TIMEOUT_S = 5.0
"""From the end of the headers to the end of the body: the API server's longest webhook timeout
is 30 s, egress-guard's are 5 s, so a body still arriving after 5 s is answered too late."""
IO_TIMEOUT_S = 10.0
"""A thread's socket reads and writes: a client that stops reading its answer."""
MAX_HEAD_BYTES = 64 * 1024
"""Request line and headers; the API server sends a few hundred bytes."""
RECV_BYTES = 256 * 1024

_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d{1,18})[ \t]*\r\n", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r\n]*chunked", re.IGNORECASE)
_CHUNKED_END = b"\r\n0\r\n\r\n"


def _with_io_deadline(sock: socket.socket) -> None:
    """Blocking reads and writes on this socket give up after IO_TIMEOUT_S, in the kernel
    (SO_RCVTIMEO, SO_SNDTIMEO): gunicorn's thread sets sockets back to blocking before it
    answers, and a client that stops reading its answer would otherwise hold the thread forever.
    A Python-level timeout would do the same at the cost of a poll() before every write."""
    limit = struct.pack("ll", int(IO_TIMEOUT_S), 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)


class TimedSSLSocket(ssl.SSLSocket):
    """An SSL socket that sends a response's head with the first part of its body: gunicorn
    writes the two separately, which costs a TLS record, its encryption and a system call more
    per review. The worker flushes what is held when the request is done (a response without a
    body). Its reads and writes have the kernel deadlines of `_with_io_deadline`."""

    held = b""

    def sendall(self, data: Any, flags: int = 0) -> None:
        if not self.held and data[-4:] == _HEAD_END and data[:5] == b"HTTP/":
            self.held = bytes(data)  # a response head: wait for its body
            return
        if self.held:
            data, self.held = self.held + bytes(data), b""
        super().sendall(data, flags)

    def flush(self) -> None:
        if self.held:
            data, self.held = self.held, b""
            super().sendall(data)


class Framing:
    """Where one HTTP/1.1 request ends in the bytes received so far."""

    @staticmethod
    def head_length(buffer: bytes | bytearray) -> int | None:
        end = buffer.find(_HEAD_END)
        return None if end < 0 else end + len(_HEAD_END)

    @staticmethod
    def body_length(buffer: bytes | bytearray, head: int) -> int | None:
        """The body's length from Content-Length (0 without one, or with one the parser will
        refuse); None for a chunked body, whose end is found by its terminating chunk."""
        if _CHUNKED.search(buffer, 0, head):
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

    def init(self) -> None:
        """In the thread: the socket is already wrapped and handshaken; the parser reads the
        buffered request first, and the socket only for what follows it."""
        if self.parser is None:
            self.parser: Any = http.get_parser(self.cfg, self.sock, self.client)
        self.initialized = True
        if self.request:
            self.parser.unreader.unread(self.request)
            self.request = b""

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

    def complete(self, max_body_bytes: int) -> bool:
        """Whether `received` holds a whole request; if so it moves to `request`. A body
        announced larger than `max_body_bytes` is not waited for: the app refuses the request
        from its headers alone (413)."""
        received = self.received
        if self.head is None:
            self.head = Framing.head_length(received)
            if self.head is None:
                if len(received) > MAX_HEAD_BYTES:
                    raise ValueError("request head too large")
                return False
            self.body = Framing.body_length(received, self.head)
            self.deadline = None  # the body's own deadline starts when it is waited for
            if self.body is not None and self.body > max_body_bytes:
                self.body = 0
        if self.body is None:
            end = received.find(_CHUNKED_END, self.head - 2)
            if end < 0:
                return False
            total = end + len(_CHUNKED_END)
        else:
            total = self.head + self.body
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
        self._take_in(conn, selectors.EVENT_READ)
        self._advance(conn)

    def _wrap(self, raw: socket.socket) -> Any:
        _with_io_deadline(raw)
        if not self.cfg.is_ssl:
            return raw
        context = gunicorn_sock.ssl_context(self.cfg)
        return TimedSSLSocket._create(  # type: ignore[attr-defined]
            sock=raw,
            server_side=True,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=True,
            server_hostname=None,
            context=context,
            session=None,
        )

    def _take_in(self, conn: IntakeConn, events: int) -> None:
        self.intake.add(conn)
        self.poller.register(conn.sock, events, partial(self._readable, conn))

    def _readable(self, conn: IntakeConn, _sock: Any) -> None:
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
                except (ssl.SSLWantReadError, BlockingIOError):
                    conn.waiting(time.monotonic())
                    return
                except ssl.SSLWantWriteError:
                    self._wait_for(conn, selectors.EVENT_WRITE)
                    return
                if not data:
                    if conn.received or conn.head is not None:
                        raise ConnectionResetError("the client closed mid-request")
                    self._drop(conn)
                    return
                conn.add(data)
                if conn.complete(self.max_body_bytes):
                    self._dispatch(conn)
                    return
        except (OSError, ssl.SSLError, ValueError):
            self._drop(conn)

    def _wait_for(self, conn: IntakeConn, events: int) -> None:
        key = self.poller.get_key(conn.sock)
        if key.events != events:
            self.poller.modify(conn.sock, events, key.data)

    def _dispatch(self, conn: IntakeConn) -> None:
        self.intake.discard(conn)
        self.poller.unregister(conn.sock)
        conn.data_ready = True
        self.enqueue_req(conn)

    def _drop(self, conn: IntakeConn) -> None:
        if conn in self.intake:
            self.intake.discard(conn)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def on_client_socket_readable(self, conn: IntakeConn, client: Any) -> None:
        """A kept-alive connection's next request: read in here too, never in a thread. The
        socket stays registered with this callback until the request is whole."""
        if conn not in self.intake:
            self.keepalived_conns.remove(conn)
            conn.start_request()
            self.intake.add(conn)
        self._advance(conn)

    def handle_request(self, req: Any, conn: IntakeConn) -> Any:
        """gunicorn's, then whatever response head is still held is sent."""
        try:
            return super().handle_request(req, conn)
        finally:
            flush = getattr(conn.sock, "flush", None)
            if flush is not None:
                with contextlib.suppress(OSError):
                    flush()

    def finish_request(self, conn: IntakeConn, fs: Any) -> None:
        """After an answer: a request already received whole (pipelined) goes straight back to
        a thread; anything partial is read in the loop like any other."""
        if conn.received and not fs.cancelled() and fs.exception() is None and fs.result():
            conn.start_request()
            try:
                if conn.complete(self.max_body_bytes):
                    self.enqueue_req(conn)
                    return
            except ValueError:
                self.nr_conns -= 1
                conn.close()
                return
        super().finish_request(conn, fs)

    def murder_pending(self) -> None:
        """Close the connections past their handshake, header or body deadline."""
        super().murder_pending()
        if self.intake:
            now = time.monotonic()
            for conn in [c for c in self.intake if c.deadline is not None and c.deadline <= now]:
                self._drop(conn)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wake in time for the nearest intake deadline (at most `timeout`)."""
        if self.intake:
            deadlines = [c.deadline for c in self.intake if c.deadline is not None]
            if deadlines:
                timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)
