"""A cluster for the benchmark: the local API server of the test suite, as production would have.

With a cluster, an admitted workload's NetworkPolicies are ensured through the API on its first
review and remembered; every later review makes no API call. Without one (`--cluster none`),
egress-guard reports what it would create in a warning instead, which is not what production pays.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests"

NAMESPACES = {
    "egress-guard": {},
    "bench": {"egress-guard.io/mode": "enforce", "egress-guard.io/inject": "networkpolicy"},
    "bench-proxy": {"egress-guard.io/mode": "enforce", "egress-guard.io/inject": "proxy"},
}


@dataclass(frozen=True)
class LocalCluster:
    api: Any
    """tests/local_apiserver.LocalApiServer"""
    kubeconfig: Path

    def calls(self) -> dict[str, int]:
        """API calls so far, by verb and resource ("create events": 12)."""
        return {f"{verb} {resource}": n for (verb, resource), n in self.api.counts().items()}


@contextmanager
def local_cluster(workdir: Path) -> Iterator[LocalCluster]:
    """The local API server on a loopback port, with the benchmark's namespaces."""
    sys.path.insert(0, str(TESTS))
    local_apiserver = importlib.import_module("local_apiserver")  # test-suite code, untyped here

    with local_apiserver.LocalApiServer(max_lifetime_s=7200) as api:
        api.seed(
            *(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels},
                }
                for name, labels in NAMESPACES.items()
            )
        )
        yield LocalCluster(api, api.kubeconfig(workdir / "kubeconfig"))
