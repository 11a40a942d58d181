"""A minimal TLS server on a loopback port and a client that trusts only a given CA bundle.

Used to check certificates the way the API server uses them: the handshake must succeed for a
name the certificate carries and fail for any other, with nothing but the CA trusted.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

from webhook.serving.tls import build_context


@contextlib.contextmanager
def tls_listener(cert: Path, key: Path, host: str = "127.0.0.1") -> Iterator[int]:
    """Serve TLS handshakes with this pair on `host` until the block ends; yields the port."""
    context = build_context(cert, key)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, 0), family=family)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            with contextlib.suppress(OSError), context.wrap_socket(raw, server_side=True) as tls:
                tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def client_context(cafile: Path) -> ssl.SSLContext:
    """Verifies the server against `cafile` only (not the system store), as the API server does."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(cafile))
    return context


def handshake(port: int, server_hostname: str, cafile: Path, host: str = "127.0.0.1") -> bytes:
    """Connect to `host` as if `server_hostname` resolved there; the server's first bytes."""
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        client_context(cafile).wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        return tls.recv(16)


def peer_certificate(port: int, host: str = "127.0.0.1") -> bytes:
    """The DER certificate a new connection is served, without verifying it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der
