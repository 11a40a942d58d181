"""No review under the body limit pushes the server past its memory limit.

A 2 MB review of tens of thousands of one-line containers in a namespace that injects the proxy
would be answered with a patch of tens of megabytes; four at once would pass the deployment's
384 MiB. The mutation injects into at most MAX_CONTAINERS containers, so the answer stays small,
and the peak resident memory of the whole server (master and both workers) is measured.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from builders import PROFILE, review_document
from running_server import RunningServer, peak_rss_mib, running_server, worker_pids

from webhook.core.proxy_env import MAX_CONTAINERS

pytestmark = pytest.mark.e2e

MEMORY_LIMIT_MIB = 384
"""The webhook container's limit in deploy/deployment.yaml."""
REQUEST_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("memory"), workers=2) as running:
        yield running


def many_containers(count: int, uid: str) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "wide", "labels": {PROFILE: "none"}},
        "spec": {"containers": [{"name": f"c{i}", "image": "x"} for i in range(count)]},
    }
    return review_document(pod, namespace="legacy", uid=uid)  # legacy: inject proxy


def server_peak_rss_mib(master: int) -> float:
    """Peak resident memory of the master and its workers together, MiB."""
    return sum(peak_rss_mib(pid) for pid in (master, *worker_pids(master)))


def test_four_huge_mutations_at_once_stay_under_the_memory_limit(server: RunningServer) -> None:
    count = 70_000
    documents = [many_containers(count, f"wide-{i}") for i in range(4)]
    assert len(orjson.dumps(documents[0])) >= REQUEST_BYTES * 0.9

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda d: server.send("/mutate", d), documents))
    for status, body in answers:
        assert status == 200
        response = body["response"]
        assert response["allowed"] and "patch" not in response
        assert any(f"more than {MAX_CONTAINERS}" in w for w in response["warnings"])
    peak = server_peak_rss_mib(server.process.pid)
    print(f"peak resident memory of the server: {peak:.0f} MiB")
    assert peak < MEMORY_LIMIT_MIB, f"peak {peak:.0f} MiB"


def test_an_answer_stays_small_at_the_bound(server: RunningServer) -> None:
    document = many_containers(MAX_CONTAINERS, "at-the-bound")
    status, body = server.send("/mutate", document)
    assert status == 200 and "patch" in body["response"]
    size = len(orjson.dumps(body))
    assert size < 1024 * MAX_CONTAINERS + 4096, f"{size} bytes for {MAX_CONTAINERS} containers"
