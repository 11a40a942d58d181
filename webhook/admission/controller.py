"""The admission controller: the one place that sequences a review.

gather context (namespace labels) -> decide (the pure core) -> act (ensure NetworkPolicies), and
turn every failure on the way into a clear decision. The HTTP transport and the offline CLI both
call `review`, so they cannot disagree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from webhook.admission.ports import (
    ApplyOutcome,
    NamespaceSource,
    NamespaceUnavailable,
    PolicyApplier,
    PolicyApplyError,
    PolicySource,
    WorkloadSource,
    WorkloadsUnavailable,
)
from webhook.core.decision import Decision, Verdict, allowed, bounded_warnings, errored, shorten
from webhook.core.evaluate import Action, mutate, triage, validate
from webhook.core.namespace_preview import NamespaceChange, namespace_change, preview
from webhook.core.policy import Policy
from webhook.core.request import AdmissionRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decision and what carrying it out did (for logs, metrics and the CLI)."""

    decision: Decision
    applied: tuple[ApplyOutcome, ...] = field(default=())

    @property
    def mode(self) -> str:
        """The namespace's mode (enforce, warn, audit); empty where it is not managed."""
        mode = self.decision.mode
        return mode.value if mode is not None else ""


@dataclass(slots=True)
class AdmissionController:
    policies: PolicySource
    namespaces: NamespaceSource
    applier: PolicyApplier
    workloads: WorkloadSource | None = None
    """Lists a namespace's workloads for the namespace preview; None: no preview of workloads."""

    def review(self, request: AdmissionRequest, action: Action) -> Outcome:
        """Decide one review and carry out its intents; never raises.

        A validation that cannot be decided is refused (fail closed: admitting would leave egress
        open). A mutation that cannot be made is allowed without a patch, with a warning: the
        proxy variables are a convenience, validation still checks the profile and ensures the
        NetworkPolicies, and the mutating webhook's `failurePolicy: Ignore` promises as much.
        """
        try:
            return self._review(request, action)
        except Exception:
            log.exception("review %s failed", request.uid)
            if action is Action.MUTATE:
                return _not_injected("an internal error; see the egress-guard log")
            return Outcome(
                errored(500, "egress-guard failed to evaluate this request; see its log")
            )

    def _review(self, request: AdmissionRequest, action: Action) -> Outcome:
        policy = self.policies.current()
        if action is Action.VALIDATE and request.kind == "Namespace":
            change = namespace_change(request, policy)
            if change is not None:
                return Outcome(self._preview(change, policy))
        found = triage(request, policy, action)
        if found.workload is None:
            return Outcome(allowed(note=found.note))
        try:
            labels = self.namespaces.labels(request.namespace)
        except NamespaceUnavailable as err:
            if action is Action.MUTATE:
                return _not_injected(f"namespace {request.namespace!r} could not be read ({err})")
            return Outcome(
                errored(
                    503,
                    f"egress-guard could not read namespace {request.namespace!r} to decide "
                    f"this request: {err}",
                )
            )
        if action is Action.MUTATE:
            return Outcome(mutate(request, labels, policy, found))
        decision = validate(request, labels, policy, found)
        if not decision.intents or not decision.allowed:
            return Outcome(decision)
        if request.dry_run:
            names = ", ".join(name for intent in decision.intents for name in intent.names)
            return Outcome(decision.with_warnings(f"egress-guard: dry run: would ensure {names}"))
        return self._carry_out(decision)

    def _preview(self, change: NamespaceChange, policy: Policy) -> Decision:
        """Warnings about the workloads a namespace's new mode would refuse; the namespace change
        itself is always allowed, whatever happens while listing."""
        if change.created or self.workloads is None:
            return preview(change, (), complete=True, policy=policy)
        try:
            listing = self.workloads.workloads(change.name)
        except WorkloadsUnavailable as err:
            return preview(change, (), complete=False, policy=policy, unavailable=str(err))
        except Exception:
            log.exception("listing the workloads of namespace %s failed", change.name)
            return preview(
                change, (), complete=False, policy=policy, unavailable="see the egress-guard log"
            )
        return preview(change, listing.workloads, complete=listing.complete, policy=policy)

    def _carry_out(self, decision: Decision) -> Outcome:
        """Ensure the NetworkPolicies before answering; fail closed where the intent requires."""
        applied: list[ApplyOutcome] = []
        extra_warnings: list[str] = []
        for intent in decision.intents:
            try:
                outcome = self.applier.ensure(intent)
            except PolicyApplyError as err:
                if intent.required:
                    return Outcome(
                        replace(
                            decision,
                            allowed=False,
                            verdict=Verdict.DENIED,
                            code=503,
                            message=(
                                f"egress-guard could not ensure the NetworkPolicies "
                                f"{', '.join(intent.names)} in namespace {intent.namespace!r} "
                                f"({err}); the workload is refused so that it never runs with "
                                "open egress. Retry shortly."
                            ),
                            violations=(f"network policies not ensured: {err}",),
                            warnings=bounded_warnings(decision.warnings),
                        ),
                        tuple(applied),
                    )
                extra_warnings.append(shorten(f"egress-guard: NetworkPolicies not ensured: {err}"))
                continue
            applied.append(outcome)
            if outcome.reported:
                extra_warnings.append(
                    f"egress-guard: no cluster: would ensure {', '.join(outcome.reported)}"
                )
        if extra_warnings:
            decision = decision.with_warnings(*extra_warnings)
        return Outcome(decision, tuple(applied))


def _not_injected(why: str) -> Outcome:
    return Outcome(
        allowed(
            "mutation failed",
            (shorten(f"egress-guard: proxy variables not injected: {why}"),),
        )
    )
