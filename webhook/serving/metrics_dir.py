"""The directory where gunicorn's workers keep their Prometheus values (multiprocess mode).

prometheus_client decides at import whether it runs in multiprocess mode, so the directory must
be in the environment before anything imports it: `serve` calls `prepare()` first. Files left by a
previous run (a restarted container keeps its emptyDir) would be added to this run's counts, so
the directory is emptied at start. A dead worker's counters stay: totals survive a worker restart.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"


def _wipe(directory: Path) -> None:
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


@contextmanager
def multiprocess_dir() -> Iterator[Path]:
    """PROMETHEUS_MULTIPROC_DIR for this server: the one given (emptied of old values), or a
    fresh temporary one, removed when the server stops."""
    given = os.environ.get(ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        _wipe(directory)
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="egress-guard-metrics-"))
    os.environ[ENV] = str(directory)
    owner = os.getpid()
    try:
        yield directory
    finally:
        # A gunicorn worker is a fork of this process and unwinds this block when it exits:
        # only the server itself removes the directory its live workers still use.
        if os.getpid() == owner:
            os.environ.pop(ENV, None)
            shutil.rmtree(directory, ignore_errors=True)


def mark_worker_dead(_arbiter: Any, worker: Any) -> None:
    """gunicorn's child_exit hook: drop the live-gauge files of a worker that exited."""
    directory = os.environ.get(ENV)
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, directory)  # type: ignore[no-untyped-call]
