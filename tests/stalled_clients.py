"""Connections that stall against a server in the four ways a pod could make them: nothing
sent, one byte of a TLS handshake, half a request's headers, a body that never ends. Held open
(and re-opened when the server closes them at their deadline) for as long as a block runs. Used
by the slow-client tests, the robustness suite and the benchmark."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path


def stalled_connection(port: int, ca: Path, kind: int) -> socket.socket:
    """One connection stalled in way `kind` (0 to 3, in the order of the module docstring)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    if kind == 0:
        return raw
    if kind == 1:
        raw.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello
        return raw
    sock = ssl.create_default_context(cafile=str(ca)).wrap_socket(raw, server_hostname="localhost")
    if kind == 2:
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: egress-guard\r\nContent-Ty")
    else:
        sock.sendall(
            b"POST /validate HTTP/1.1\r\nHost: egress-guard\r\n"
            b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
        )
    return sock


@contextlib.contextmanager
def stalled_connections(port: int, ca: Path, count: int) -> Iterator[int]:
    """`count` connections left stalled against the server until the block ends (re-opened when
    the server closes them at their deadline, so that `count` stall throughout)."""
    opened: list[socket.socket] = []

    def one(kind: int) -> socket.socket:
        return stalled_connection(port, ca, kind)

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
