"""The server's TLS context, rebuilt when the certificate files change.

gunicorn asks for a context for every new connection; handing it a cached one avoids re-reading
the key per handshake, and checking the files' signatures lets a renewed certificate take effect
for new connections without a restart. A half-written pair (new key, old certificate) fails to
load and the previous context stays in use until the pair is whole again.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 2.0


def _signature(*paths: Path) -> tuple[tuple[int, int, int], ...] | None:
    """Identity of the files behind the paths. The inode counts: a Kubernetes Secret volume
    renews by swapping a symlink to a new directory, which may keep sizes and times alike."""
    try:
        stats = [p.stat() for p in paths]
    except OSError:
        return None
    return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


def build_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=cert, keyfile=key)
    context.set_alpn_protocols(["http/1.1"])
    return context


class ReloadingContext:
    def __init__(self, cert: Path, key: Path, check_interval: float = CHECK_INTERVAL_S) -> None:
        self._cert, self._key = cert, key
        self._interval = check_interval
        self._lock = threading.Lock()
        self._signature = _signature(cert, key)
        self._context = build_context(cert, key)
        self._next_check = time.monotonic() + check_interval

    def current(self) -> ssl.SSLContext:
        if time.monotonic() >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self._next_check = time.monotonic() + self._interval
                signature = _signature(self._cert, self._key)
                if signature is not None and signature != self._signature:
                    self._context = build_context(self._cert, self._key)
                    self._signature = signature
                    log.info("serving certificate reloaded from %s", self._cert)
            except (OSError, ssl.SSLError, ValueError) as err:
                log.warning(
                    "certificate files changed but do not load yet (%s); keeping the old", err
                )
            finally:
                self._lock.release()
        return self._context


_contexts: dict[tuple[Path, Path], ReloadingContext] = {}


def context_for(cert: Path, key: Path) -> ssl.SSLContext:
    """The process's reloading context for this certificate pair."""
    reloader = _contexts.get((cert, key))
    if reloader is None:
        reloader = _contexts.setdefault((cert, key), ReloadingContext(cert, key))
    return reloader.current()
