"""The admission controller: the one place that sequences a review.

gather context (namespace labels) -> decide (the pure core) -> act (ensure NetworkPolicies), and
turn every failure on the way into a clear decision. The HTTP transport and the offline CLI both
call `review`, so they cannot disagree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from webhook.admission.ports import (
    EnsureResult,
    NamespaceSource,
    NamespaceUnavailable,
    NetworkPoliciesNotEnsured,
    NetworkPolicyApplier,
    NotEnsuredBecause,
    PolicySource,
    WorkloadSource,
    WorkloadsUnavailable,
)
from webhook.core.decision import (
    Decision,
    EnsureNetworkPolicies,
    Note,
    Verdict,
    allowed,
    errored,
    unavailable,
)
from webhook.core.evaluate import Action, mutate, triage, validate
from webhook.core.findings import (
    MUTATION_SKIPPED,
    NAMESPACE_UNAVAILABLE,
    NETWORK_POLICIES_NOT_ENSURED,
    NETWORK_POLICIES_REPORTED,
    Finding,
    Severity,
    Subject,
    detail,
)
from webhook.core.namespace_governance import review_namespace_change
from webhook.core.namespace_preview import NamespaceChange, namespace_change, preview
from webhook.core.network_policy_review import is_network_policy, review_network_policy
from webhook.core.policy import Policy
from webhook.core.request import AdmissionRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReviewResult:
    """A decision and what carrying it out did (for logs, metrics and the CLI)."""

    decision: Decision
    applied: tuple[EnsureResult, ...] = field(default=())

    @property
    def mode(self) -> str:
        """The namespace's mode (enforce, warn, audit); empty where it is not managed."""
        mode = self.decision.mode
        return mode.value if mode is not None else ""


@dataclass(slots=True)
class AdmissionController:
    policies: PolicySource
    namespaces: NamespaceSource
    network_policies: NetworkPolicyApplier
    workloads: WorkloadSource | None = None
    """Lists a namespace's workloads for the namespace preview; None: no preview of workloads."""
    own_users: frozenset[str] = frozenset()
    """egress-guard's own service accounts (`system:serviceaccount:<ns>:<name>`): the only users
    who may change the NetworkPolicies it generates."""

    def review(self, request: AdmissionRequest, action: Action) -> ReviewResult:
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
            return ReviewResult(
                errored("egress-guard failed to evaluate this request; see its log")
            )

    def _review(self, request: AdmissionRequest, action: Action) -> ReviewResult:
        policy = self.policies.current()
        if action is Action.VALIDATE and request.kind == "Namespace":
            refused = review_namespace_change(request, policy)
            if refused is not None:
                return ReviewResult(refused)
            change = namespace_change(request, policy)
            if change is not None:
                return ReviewResult(self._preview(change, policy))
        if action is Action.VALIDATE and is_network_policy(request):
            if request.namespace in policy.exempt:
                return ReviewResult(allowed(Note.EXEMPT))
            try:
                labels = self.namespaces.labels(request.namespace)
            except NamespaceUnavailable as err:
                return ReviewResult(_namespace_unavailable(request.namespace, err))
            return ReviewResult(review_network_policy(request, labels, policy, self.own_users))
        found = triage(request, policy, action)
        if found.workload is None and not found.malformed:
            return ReviewResult(allowed(found.note))
        try:
            labels = self.namespaces.labels(request.namespace)
        except NamespaceUnavailable as err:
            if action is Action.MUTATE:
                return _not_injected(f"namespace {request.namespace} could not be read ({err})")
            return ReviewResult(_namespace_unavailable(request.namespace, err))
        if action is Action.MUTATE:
            return ReviewResult(mutate(request, labels, policy, found))
        decision = validate(request, labels, policy, found)
        if not decision.intents or not decision.allowed:
            return ReviewResult(decision)
        return self._carry_out(decision, dry_run=request.dry_run)

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

    def _carry_out(self, decision: Decision, *, dry_run: bool = False) -> ReviewResult:
        """Ensure the NetworkPolicies before answering; fail closed where the intent requires.

        A dry run reads and never writes (`check`), and gets the verdict the real request would:
        a same-named policy egress-guard did not make refuses it just the same.
        """
        applied: list[EnsureResult] = []
        extra: list[Finding] = []
        for intent in decision.intents:
            try:
                if dry_run:
                    self.network_policies.check(intent)
                    extra.append(_reported(intent, "dry run"))
                    continue
                result = self.network_policies.ensure(intent)
            except NetworkPoliciesNotEnsured as err:
                failure = _not_ensured(intent, err, required=intent.required)
                if intent.required:
                    kept = tuple(f for f in decision.findings if not f.is_violation)
                    refusal = Decision(_REFUSAL[err.because], (failure, *kept), mode=decision.mode)
                    return ReviewResult(refusal, tuple(applied))
                extra.append(failure)
                continue
            applied.append(result)
            if result.reported:
                extra.append(_reported(intent, "no cluster", result.reported))
        if extra:
            decision = decision.with_findings(*extra)
        return ReviewResult(decision, tuple(applied))


def _namespace_unavailable(namespace: str, err: NamespaceUnavailable) -> Decision:
    """Refused: without its labels egress-guard cannot tell whether the namespace enforces."""
    return unavailable(
        (
            Finding(
                NAMESPACE_UNAVAILABLE,
                Severity.VIOLATION,
                Subject("Namespace", namespace),
                f"could not be read to decide this request ({err})",
                "retry shortly",
                detail(error=str(err)),
            ),
        )
    )


def _reported(
    intent: EnsureNetworkPolicies, why: str, names: tuple[str, ...] | None = None
) -> Finding:
    """The NetworkPolicies admission would ensure, where it ensures none."""
    names = names if names is not None else intent.names
    return Finding(
        NETWORK_POLICIES_REPORTED,
        Severity.ADVICE,
        None,
        f"{why}: would ensure {', '.join(names)}",
        detail=detail(namespace=intent.namespace, networkPolicies=names, why=why),
    )


_REFUSAL = {
    NotEnsuredBecause.TRANSIENT: Verdict.UNAVAILABLE,
    NotEnsuredBecause.FOREIGN: Verdict.DENIED,
    NotEnsuredBecause.REFUSED: Verdict.ERRORED,
    NotEnsuredBecause.NOT_SERVED: Verdict.ERRORED,
}
"""An enforcing namespace's workload whose NetworkPolicies are not ensured is refused: as
unavailable when retrying may succeed, as denied when the namespace's own NetworkPolicy is in
the way (its owner is told, by an Event too), as errored when egress-guard's own deployment is."""

_FIX = {
    NotEnsuredBecause.TRANSIENT: "retry shortly",
    NotEnsuredBecause.FOREIGN: "",
    NotEnsuredBecause.REFUSED: "egress-guard's deployment needs fixing; see its log",
    NotEnsuredBecause.NOT_SERVED: "",  # the reason says what to install, or to change
}


def _not_ensured(
    intent: EnsureNetworkPolicies, err: NetworkPoliciesNotEnsured, *, required: bool
) -> Finding:
    """NetworkPolicies the API did not let egress-guard ensure: in enforce mode the workload is
    refused, since it would run with open egress; elsewhere it is admitted with this warning."""
    names = ", ".join(intent.names)
    what = f"NetworkPolicies {names}" if "/" not in names else "egress objects"
    if required:
        return Finding(
            NETWORK_POLICIES_NOT_ENSURED,
            Severity.VIOLATION,
            Subject("Namespace", intent.namespace),
            f"could not get its {what} ensured ({err}); the workload is "
            "refused so that it never runs with open egress",
            _FIX[err.because],
            detail(networkPolicies=intent.names, because=err.because.value, error=str(err)),
        )
    return Finding(
        NETWORK_POLICIES_NOT_ENSURED,
        Severity.ADVICE,
        None,
        f"{'NetworkPolicies' if '/' not in names else 'egress objects'} not ensured: {err}",
        detail=detail(
            namespace=intent.namespace,
            networkPolicies=intent.names,
            because=err.because.value,
            error=str(err),
        ),
    )


def _not_injected(why: str) -> ReviewResult:
    skipped = Finding(
        MUTATION_SKIPPED,
        Severity.ADVICE,
        None,
        f"proxy variables not injected: {why}",
        detail=detail(error=why),
    )
    return ReviewResult(allowed(Note.MUTATION_FAILED, (skipped,)))
