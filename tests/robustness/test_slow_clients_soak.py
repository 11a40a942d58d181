"""Soak with slow clients: mixed reviews from several keep-alive clients while connections keep
stalling against the server (each closed at its deadline and opened again). Zero failed reviews:
a stalled connection never holds a thread that answers them. Sizes scale with
EGRESS_GUARD_ROBUSTNESS_SCALE."""

from __future__ import annotations

import time
from pathlib import Path

from builders import PROFILE, review_document, workload
from review_load import ReviewLoad
from robustness_support import scaled
from running_server import running_server
from stalled_clients import stalled_connections


def test_reviews_flow_while_connections_keep_stalling(tmp_path: Path) -> None:
    total = scaled(2000)
    with (
        running_server(tmp_path, workers=2) as server,
        stalled_connections(server.port, server.ca_file, scaled(100)) as stalled,
    ):
        load = ReviewLoad(
            [server.port],
            server.tls_context(),
            lambda uid: review_document(workload("Deployment", {PROFILE: "none"}), uid=uid),
            threads=3,
            max_seconds=300,
        )
        load.start()
        started = time.monotonic()
        while load.answered() < total:
            time.sleep(0.1)
            assert time.monotonic() - started < 300, "the soak took too long"
        stats = load.stop()
        elapsed = time.monotonic() - started
    print(
        f"\nslow-client soak: {stats.answered} reviews in {elapsed:.1f} s beside {stalled} "
        f"stalled connections, {len(stats.failures)} failed"
    )
    assert not stats.failures, stats.failures[:5]
    assert stats.answered >= total
