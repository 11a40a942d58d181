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
import selectors
import socket
import ssl
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
_CHUNKED_END = b"\r\n0\r\n\r\n"


class TimedSSLSocket(ssl.SSLSocket):
    """An SSL socket whose blocking mode keeps a deadline: gunicorn's thread sets sockets back to
    blocking before it reads and writes, which would otherwise wait forever."""

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(IO_TIMEOUT_S)
        else:
            super().setblocking(False)


class TimedSocket(socket.socket):
    """The same for plain TCP (no TLS, in tests)."""

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(IO_TIMEOUT_S)
        else:
            super().setblocking(False)


class Framing:
    """Where one HTTP/1.1 request ends in the bytes received so far."""

    @staticmethod
    def head_length(buffer: bytes | bytearray) -> int | None:
        end = buffer.find(_HEAD_END)
        return None if end < 0 else end + len(_HEAD_END)

    @staticmethod
    def body_length(head: bytes) -> int | None:
        """The body's length from Content-Length (0 without one); None for a chunked body,
        whose end is found by its terminating chunk."""
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value.lower():
                return None
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    return 0  # the parser answers 400
        return length


class IntakeConn(TConn):  # type: ignore[misc]
    """A connection and what has been received of its next request."""

    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.received = bytearray()
        self.handshaken = not cfg.is_ssl
        self.head: int | None = None
        self.body: int | None = None
        self.deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
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
        self.head = self.body = None
        self.deadline = time.monotonic() + HEADER_TIMEOUT_S

    def complete(self, max_body_bytes: int) -> bool:
        """Whether `received` holds a whole request; if so it moves to `request`. A body
        announced larger than `max_body_bytes` is not waited for: the app refuses the request
        from its headers alone (413)."""
        if self.head is None:
            self.head = Framing.head_length(self.received)
            if self.head is None:
                if len(self.received) > MAX_HEAD_BYTES:
                    raise ValueError("request head too large")
                return False
            self.body = Framing.body_length(bytes(self.received[: self.head]))
            self.deadline = time.monotonic() + BODY_TIMEOUT_S
            if self.body is not None and self.body > max_body_bytes:
                self.body = 0
        if self.body is None:
            end = self.received.find(_CHUNKED_END, self.head - 2)
            if end < 0:
                return False
            total = end + len(_CHUNKED_END)
        else:
            total = self.head + self.body
            if len(self.received) < total:
                return False
        self.request = bytes(self.received[:total])
        del self.received[:total]
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
        if not self.cfg.is_ssl:
            timed = TimedSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
            timed.setblocking(False)
            return timed
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
                self._wait_for(conn, selectors.EVENT_READ)
            if self._receive(conn) and conn.complete(self.max_body_bytes):
                self._dispatch(conn)
        except (OSError, ssl.SSLError, ValueError):
            self._drop(conn)

    def _receive(self, conn: IntakeConn) -> bool:
        """Read what is there; False when the peer closed (the connection is dropped)."""
        while True:
            try:
                data = conn.sock.recv(RECV_BYTES)
            except (ssl.SSLWantReadError, BlockingIOError):
                return True
            except ssl.SSLWantWriteError:
                self._wait_for(conn, selectors.EVENT_WRITE)
                return True
            if not data:
                if conn.received or conn.head is not None:
                    raise ConnectionResetError("the client closed mid-request")
                self._drop(conn)
                return False
            conn.received += data

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
        """A kept-alive connection's next request: read in here too, never in a thread."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.start_request()
        self._take_in(conn, selectors.EVENT_READ)
        self._advance(conn)

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
        now = time.monotonic()
        for conn in [c for c in self.intake if c.deadline <= now]:
            self._drop(conn)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wake in time for the nearest intake deadline (at most `timeout`)."""
        if self.intake:
            nearest = min(c.deadline for c in self.intake) - time.monotonic()
            timeout = max(0.0, min(timeout, nearest))
        super().wait_for_and_dispatch_events(timeout)
