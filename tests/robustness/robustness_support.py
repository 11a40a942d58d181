"""Sizes and process measurements shared by the robustness tests."""

from __future__ import annotations

import os
from pathlib import Path

SCALE = float(os.environ.get("EGRESS_GUARD_ROBUSTNESS_SCALE", "1"))


def scaled(count: int) -> int:
    return max(1, int(count * SCALE))


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers of a master process."""
    pids: list[int] = []
    for task in Path(f"/proc/{master}/task").glob("*"):
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
