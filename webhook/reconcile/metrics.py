"""The reconciler's Prometheus metrics, served on its health port at `/metrics`.

What a platform team alerts on: passes that fail or stop early, how long a pass takes and how
many API calls it makes (both should stay flat as the cluster grows, rising only with change),
and what the passes changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from webhook.reconcile.reconciler import ReconcileReport

PASS_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds: a converged pass over a large cluster takes a few seconds, a first one minutes."""


class ReconcileMetrics:
    """Counters and gauges of reconcile passes, in a registry of their own."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._wall_clock = wall_clock
        self.passes = Counter(
            "egress_guard_reconcile_passes",
            "Reconcile passes by result: complete, errors (a read or a write failed), stopped "
            "(leadership lost mid-pass).",
            ["result"],
            registry=self.registry,
        )
        self.objects = Counter(
            "egress_guard_reconcile_objects",
            "Generated NetworkPolicies by what a pass did with them.",
            ["action"],
            registry=self.registry,
        )
        self.api_calls = Counter(
            "egress_guard_reconcile_api_calls",
            "Calls to the Kubernetes API made by reconcile passes (lease renewals not counted).",
            registry=self.registry,
        )
        self.retries = Counter(
            "egress_guard_reconcile_write_retries",
            "Writes tried again after a 429, a 5xx or no answer.",
            registry=self.registry,
        )
        self.duration = Histogram(
            "egress_guard_reconcile_pass_duration_seconds",
            "How long a reconcile pass took.",
            buckets=PASS_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.namespaces = Gauge(
            "egress_guard_reconcile_namespaces",
            "Namespaces seen by the last pass, and those of them with generated NetworkPolicies.",
            ["scope"],
            registry=self.registry,
        )
        self.last_complete = Gauge(
            "egress_guard_reconcile_last_complete_timestamp_seconds",
            "When a pass last left the cluster as the policy says (Unix time; 0: never).",
            registry=self.registry,
        )
        for result in ("complete", "errors", "stopped"):
            self.passes.labels(result)
        for action in ("created", "updated", "deleted", "unchanged", "kept", "refused", "left"):
            self.objects.labels(action)

    def observe(self, report: ReconcileReport) -> None:
        result = "stopped" if report.stopped else "complete" if report.complete else "errors"
        self.passes.labels(result).inc()
        counts = {
            "created": len(report.created),
            "updated": len(report.updated),
            "deleted": len(report.deleted),
            "unchanged": report.unchanged,
            "kept": len(report.kept),
            "refused": len(report.refused),
            "left": report.left,
        }
        for action, count in counts.items():
            self.objects.labels(action).inc(count)
        self.api_calls.inc(report.api_calls)
        self.retries.inc(report.retries)
        self.duration.observe(report.duration_s)
        self.namespaces.labels("all").set(report.namespaces)
        self.namespaces.labels("managed").set(report.managed)
        if report.complete:
            self.last_complete.set(self._wall_clock())

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))
