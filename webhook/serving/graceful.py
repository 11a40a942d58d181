"""Stopping without losing a review: refuse new connections at once, finish the rest.

On SIGTERM gunicorn's gthread workers stop accepting, finish the requests in flight, answer a
request that arrives on a kept-alive connection with `Connection: close`, and close idle
connections after a short linger. One gap remains: the listening socket stays open until the
last worker exits, so a connection made meanwhile waits in the kernel's backlog and is reset
seconds later. Shutting the listening socket down when the server stops makes the kernel refuse
such connections immediately, and the API server retries them on another endpoint.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import Any

from gunicorn.arbiter import Arbiter
from gunicorn.workers.gthread import ThreadWorker


class DrainingArbiter(Arbiter):  # type: ignore[misc]
    """Arbiter that shuts its listening sockets down before it asks the workers to stop."""

    def stop(self, graceful: bool = True) -> None:
        # Same condition gunicorn uses to unlink a Unix socket: the socket is ours alone (no
        # re-executed master and no systemd socket activation share it).
        owned = self.reexec_pid == self.master_pid == 0 and not self.systemd
        if owned:
            for listener in self.LISTENERS:
                with contextlib.suppress(OSError):
                    listener.sock.shutdown(socket.SHUT_RD)
        super().stop(graceful)


class DrainingThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread worker that takes its listener being shut down as the sign to stop accepting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listeners_shut = False

    def accept(self, listener: Any) -> None:
        try:
            super().accept(listener)
        except OSError as err:
            if err.errno != errno.EINVAL:  # accept() on a shut-down listener
                raise
            self._listeners_shut = True
            self.set_accept_enabled(False)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and not self._listeners_shut)
