"""Prometheus metrics for the webhook, correct across gunicorn's worker processes.

With PROMETHEUS_MULTIPROC_DIR set (`serve` sets it), every worker writes its values to files in
that directory and `/metrics`, whichever worker answers, adds up all of them. The review path
costs a dictionary lookup and a few increments: labelled children are cached per label tuple, and
kinds outside the known set are counted as `other` so a stray kind cannot grow the series.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from webhook.admission.controller import ReviewResult
from webhook.core.decision import Verdict
from webhook.core.evaluate import Action
from webhook.core.request import AdmissionRequest
from webhook.core.workloads import BUILTIN_KINDS

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_ERROR_REASONS = {Verdict.UNAVAILABLE: "unavailable", Verdict.ERRORED: "evaluation"}
"""Answered reviews that count as errors, by the reason counted: an infrastructure failure is
never a policy denial."""
CONTENT_TYPE: str = CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds: most reviews take about a millisecond; the API server gives up after a few seconds."""

KNOWN_KINDS: frozenset[tuple[str, str]] = frozenset(
    (
        *(kind.key for kind in BUILTIN_KINDS),
        ("", "Namespace"),
        ("networking.k8s.io", "NetworkPolicy"),
    )
)
"""(API group, kind) counted under the kind's name; any other is `other`, so a stray kind (or a
Volcano Job posing as a Job) cannot grow the series."""

KNOWN_OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
"""The operations the API server sends; anything else in a (crafted) review is `other`: no
label value comes from a request unchecked, so no caller can grow the series."""


class WebhookMetrics:
    """The webhook's counters and histogram, in a registry of their own (not the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.reviews = Counter(
            "egress_guard_reviews",
            "Admission reviews answered, by webhook action, operation, kind, verdict and mode.",
            ["action", "operation", "kind", "verdict", "mode"],
            registry=registry,
        )
        self.latency = Histogram(
            "egress_guard_review_duration_seconds",
            "Time to answer an admission review, from body read to response rendered.",
            ["action"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.network_policies = Counter(
            "egress_guard_network_policies_ensured",
            "NetworkPolicies ensured during admission, by result "
            "(created, updated, unchanged; reported: no cluster to apply them to).",
            ["result"],
            registry=registry,
        )
        self.injections = Counter(
            "egress_guard_proxy_injections",
            "Pods (or ephemeral containers) given the proxy variables by the mutating webhook.",
            registry=registry,
        )
        self.errors = Counter(
            "egress_guard_errors",
            "Reviews that failed: invalid (not an AdmissionReview, 4xx), unavailable (refused "
            "because the Kubernetes API did not answer), evaluation (answered with an error "
            "verdict), internal (an unexpected exception, 500).",
            ["reason"],
            registry=registry,
        )
        self.denial_events = Counter(
            "egress_guard_denial_events",
            "Enforce-mode denials recorded as Kubernetes Events, by result (written; dropped: "
            "rate limit or full queue; failed: the API refused or did not answer).",
            ["result"],
            registry=registry,
        )
        self.observer_failures = Counter(
            "egress_guard_observer_failures",
            "Exceptions raised by what watches answered reviews (decision log, metrics, denial "
            "Events), by observer; the review was answered all the same.",
            ["observer"],
            registry=registry,
        )
        self._denial_events = {
            key: self.denial_events.labels(key) for key in ("written", "dropped", "failed")
        }
        self._reviews: dict[tuple[str, str, str, str, str], Any] = {}
        self._latency = {action: self.latency.labels(action.value) for action in Action}
        self._policy_results = {
            key: self.network_policies.labels(key)
            for key in ("created", "updated", "unchanged", "reported")
        }
        self._errors = {
            key: self.errors.labels(key)
            for key in ("invalid", "unavailable", "evaluation", "internal")
        }

    def observe(
        self, request: AdmissionRequest, action: Action, result: ReviewResult, latency_s: float
    ) -> None:
        """Count one answered review."""
        decision = result.decision
        key = (
            action.value,
            request.operation if request.operation in KNOWN_OPERATIONS else "other",
            request.kind if (request.group, request.kind) in KNOWN_KINDS else "other",
            decision.verdict.value,
            result.mode or "unmanaged",
        )
        child = self._reviews.get(key)
        if child is None:
            child = self._reviews.setdefault(key, self.reviews.labels(*key))
        child.inc()
        self._latency[action].observe(latency_s)
        error = _ERROR_REASONS.get(decision.verdict)
        if error is not None:
            self._errors[error].inc()
        if action is Action.MUTATE and decision.patch:
            self.injections.inc()
        for applied in result.applied:
            for state, names in (
                ("created", applied.created),
                ("updated", applied.updated),
                ("unchanged", applied.unchanged),
                ("reported", applied.reported),
            ):
                if names:
                    self._policy_results[state].inc(len(names))

    def denial_event(self, result: str) -> None:
        """Count one denial Event by what became of it: written, dropped or failed."""
        self._denial_events[result].inc()

    def observer_failed(self, observer: str) -> None:
        self.observer_failures.labels(observer).inc()

    def invalid_review(self) -> None:
        self._errors["invalid"].inc()

    def internal_error(self) -> None:
        self._errors["internal"].inc()

    def exposition(self) -> bytes:
        """The text format: summed over every worker's files in multiprocess mode."""
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return bytes(generate_latest(self.registry))
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))
