"""The admission hot path with one backend and with three, side by side in one run.

    python -m bench.backends_hot_path            # 20,000 reviews per case, 5 rounds
    python -m bench.backends_hot_path --quick    # 2,000 reviews per case (CI)

A Deployment review in an enforcing namespace whose generated objects are already in place:
the controller decides (the pure core) and the applier finds every object remembered, so no API
call is made. With `backends: [networkpolicy]` that is 2 objects; with all three backends 7
(2 NetworkPolicies, 2 CiliumNetworkPolicies, 2 ServiceEntries and a Sidecar). The cases
alternate round by round on one machine, and the figure is the ratio of their medians: what
the other backends cost an admission once their objects exist.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from webhook.admission.controller import AdmissionController
from webhook.cluster.api_calls import Deadline
from webhook.cluster.egress_object_applier import ClusterEgressObjectApplier
from webhook.cluster.egress_object_writer import Written
from webhook.cluster.static import StaticNamespaceSource
from webhook.config.policy_file import FixedPolicy, load_policy
from webhook.core.evaluate import Action
from webhook.core.policy import Policy
from webhook.core.request import AdmissionRequest


class _InPlaceWriter:
    """Every object is found in place (the cluster already holds it)."""

    def ensure(self, desired: Mapping[str, Any], deadline: Deadline) -> Written:
        return Written.UNCHANGED

    def inspect(self, desired: Mapping[str, Any], deadline: Deadline) -> Written:
        return Written.UNCHANGED


class _Uids:
    def uid(self, namespace: str) -> str | None:
        return "uid-" + namespace


def _review(policy: Policy) -> Callable[[], bool]:
    source = FixedPolicy(policy)
    labels = {"shop": {policy.mode_label: "enforce"}}
    applier = ClusterEgressObjectApplier(_InPlaceWriter(), source, _Uids())  # type: ignore[arg-type]
    applier.watching(lambda kind: True)
    controller = AdmissionController(
        source, StaticNamespaceSource(source, overrides=labels), applier
    )
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api", policy.profile_label: "stripe"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/api:1"}]},
            },
        },
    }
    request = AdmissionRequest(
        uid="bench", kind="Deployment", group="apps", version="v1", operation="CREATE",
        namespace="shop", name="api", object=obj,
    )  # fmt: skip
    first = controller.review(request, Action.VALIDATE)  # remembers every object
    assert first.decision.allowed, first.decision.message

    def once() -> bool:
        return controller.review(request, Action.VALIDATE).decision.allowed

    return once


def _rate(review: Callable[[], bool], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        review()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 reviews per case (CI)")
    parser.add_argument("--reviews", type=int, default=20_000, help="reviews per case a round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    count = 2_000 if args.quick else args.reviews
    example = load_policy(None)
    cases = {
        "networkpolicy": _review(example),
        "networkpolicy+cilium+istio": _review(
            example.model_copy(update={"backends": ["networkpolicy", "cilium", "istio"]})
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, review in cases.items():
            rates[name].append(_rate(review, count))
    one, three = (statistics.median(rates[name]) for name in cases)
    for name in cases:
        print(
            f"{name:28} {statistics.median(rates[name]):10,.0f} reviews/s (median of {args.rounds})"
        )
    print(f"three backends / one: {three / one:.2f}x the throughput ({one / three:.2f}x the time)")


if __name__ == "__main__":
    main()
