"""Sizes and process measurements shared by the robustness tests."""

from __future__ import annotations

import os

from running_server import rss_bytes, worker_pids

__all__ = ["SCALE", "rss_bytes", "scaled", "worker_pids"]

SCALE = float(os.environ.get("EGRESS_GUARD_ROBUSTNESS_SCALE", "1"))


def scaled(count: int) -> int:
    return max(1, int(count * SCALE))
