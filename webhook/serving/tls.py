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


def build_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The serving context. With `client_ca`, a client certificate is asked for and verified
    against it when one is presented (CERT_OPTIONAL): the kubelet's probes present none, and the
    review endpoints refuse a request without one (http/admission_endpoints.py)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=cert, keyfile=key)
    context.set_alpn_protocols(["http/1.1"])
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


class ReloadingContext:
    def __init__(
        self,
        cert: Path,
        key: Path,
        check_interval: float = CHECK_INTERVAL_S,
        client_ca: Path | None = None,
    ) -> None:
        self._cert, self._key, self._client_ca = cert, key, client_ca
        self._files = (cert, key, *((client_ca,) if client_ca else ()))
        self._interval = check_interval
        self._lock = threading.Lock()
        self._signature = _signature(*self._files)
        self._context = build_context(cert, key, client_ca)
        self._next_check = time.monotonic() + check_interval

    def current(self) -> ssl.SSLContext:
        if time.monotonic() >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self._next_check = time.monotonic() + self._interval
                signature = _signature(*self._files)
                if signature is not None and signature != self._signature:
                    self._context = build_context(self._cert, self._key, self._client_ca)
                    self._signature = signature
                    log.info("serving certificate reloaded from %s", self._cert)
            except (OSError, ssl.SSLError, ValueError) as err:
                log.warning(
                    "certificate files changed but do not load yet (%s); keeping the old", err
                )
            finally:
                self._lock.release()
        return self._context


_contexts: dict[tuple[Path, Path, Path | None], ReloadingContext] = {}


def context_for(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The process's reloading context for this certificate pair (and client CA)."""
    reloader = _contexts.get((cert, key, client_ca))
    if reloader is None:
        reloader = _contexts.setdefault(
            (cert, key, client_ca), ReloadingContext(cert, key, client_ca=client_ca)
        )
    return reloader.current()
