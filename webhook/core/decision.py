"""What the core decides, as data: a tagged verdict, the findings behind it, and what should happen
because of it.

The verdict is the tag: whether the request is allowed, the HTTP-style code and what is counted
follow from it, so a decision cannot say "allowed" and "403" at once, and a cluster that did not
answer (`UNAVAILABLE`) is never counted or recorded as a policy denial (`DENIED`). The helpers
mirror controller-runtime's admission responses (`Allowed`, `Denied`, `Errored`); the text of a
decision (its message, warnings and audit annotations) is made by `wording`, from the findings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from webhook.core.backends import object_ref
from webhook.core.findings import INTERNAL_ERROR, Finding, Severity
from webhook.core.json_patch import PatchOp
from webhook.core.policy import Mode


class Verdict(StrEnum):
    """How a review ended: the tag of a decision, as logs, metrics and `check` name it."""

    ALLOWED = "allowed"
    WARNED = "warned"
    """Allowed, with the violations as warnings (warn mode, or an update of an object that
    violated before it too)."""
    AUDITED = "audited"
    """Allowed, with the violations in the audit log."""
    DENIED = "denied"
    """Refused by the policy: the findings say why."""
    UNAVAILABLE = "unavailable"
    """Refused because the cluster did not answer in time (fail closed): retry shortly."""
    ERRORED = "errored"
    """Refused because egress-guard failed to evaluate the request."""


ADMITTING = frozenset({Verdict.ALLOWED, Verdict.WARNED, Verdict.AUDITED})

CODES: Mapping[Verdict, int] = {
    Verdict.DENIED: 403,
    Verdict.UNAVAILABLE: 503,
    Verdict.ERRORED: 500,
}
"""The HTTP-style code in the AdmissionResponse status of a refusal."""


class Note(StrEnum):
    """Why nothing (or nothing more) was checked: for the decision log and `check`'s table."""

    EXEMPT = "namespace exempt"
    OPERATION_NOT_CHECKED = "operation not checked"
    SUBRESOURCE_NOT_CHECKED = "subresource not checked"
    NOT_MUTATED = "only pods are mutated, on creation"
    NOT_A_WORKLOAD = "not a workload"
    MALFORMED = "object not an object"
    NOT_MANAGED = "namespace not managed"
    BEING_DELETED = "object is being deleted"
    PREEXISTING = "pre-existing violation"
    NO_INJECTION = "no proxy injection here"
    NO_PROXY_CONFIGURED = "no proxy configured"
    ALREADY_INJECTED = "proxy variables already present"
    MUTATION_FAILED = "mutation failed"
    NAMESPACE_PREVIEW = "namespace preview"


@dataclass(frozen=True, slots=True)
class EnsureNetworkPolicies:
    """Intent: these egress objects must exist (as rendered) before the workload is admitted:
    NetworkPolicies, and the Cilium or Istio objects of the namespace's other backends.

    `required` says that admission must fail if they cannot be ensured (enforce mode: admitting
    the workload anyway would leave its egress open). The manifests are shared: read-only.
    """

    namespace: str
    manifests: tuple[Mapping[str, Any], ...]
    required: bool
    names: tuple[str, ...] = field(init=False, compare=False)
    """Each object as `object_ref` names it (a NetworkPolicy by name, others `Kind/name`): set
    once, since intents are memoised and the hot path reads it on every admission."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(object_ref(m) for m in self.manifests))


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one review, before it is put on the wire.

    Its text is made by `wording` (`message`, `warnings` and `audit_annotations` below are
    shortcuts to it); the review path asks `wording` directly, and only when there are findings.
    """

    verdict: Verdict
    findings: tuple[Finding, ...] = ()
    patch: tuple[PatchOp, ...] = ()
    intents: tuple[EnsureNetworkPolicies, ...] = ()
    mode: Mode | None = None
    """The namespace's mode, where it is managed (for logs, metrics and events)."""
    note: Note | None = None
    preexisting: bool = False
    """An update of an object that violated before it too (audit marks it)."""
    allowed: bool = field(init=False)
    code: int = field(init=False)
    """The HTTP-style code of the answer: 200 when allowed, else the refusal's."""
    violations: tuple[Finding, ...] = field(init=False)
    """The findings that deny under enforce. These three follow from the others and are read
    several times per review: set once here, never computed on each read."""
    said: tuple[str, tuple[str, ...]] | None = field(
        init=False, default=None, repr=False, compare=False
    )
    """Its message and warnings once `wording` has made them: the response, the decision log and
    an Event each ask for them, and they are made once."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", self.verdict in ADMITTING)
        object.__setattr__(self, "code", CODES.get(self.verdict, 200))
        violations = (
            tuple(f for f in self.findings if f.severity is Severity.VIOLATION)
            if self.findings
            else ()
        )
        object.__setattr__(self, "violations", violations)

    @property
    def message(self) -> str:
        """Why a refusal was refused (empty when allowed)."""
        from webhook.core.wording import message

        return message(self)

    @property
    def warnings(self) -> tuple[str, ...]:
        """The warnings kubectl prints: few, each at most 120 characters."""
        from webhook.core.wording import warnings

        return warnings(self)

    @property
    def audit_annotations(self) -> Mapping[str, str]:
        from webhook.core.wording import audit_annotations

        return audit_annotations(self)

    def with_findings(self, *extra: Finding) -> Decision:
        return replace(self, findings=(*self.findings, *extra))


def allowed(
    note: Note | None = None, findings: tuple[Finding, ...] = (), mode: Mode | None = None
) -> Decision:
    return Decision(Verdict.ALLOWED, findings, note=note, mode=mode)


def denied(findings: tuple[Finding, ...], mode: Mode | None = None) -> Decision:
    """Refused by the policy: `findings` hold at least one violation."""
    return Decision(Verdict.DENIED, findings, mode=mode)


def unavailable(findings: tuple[Finding, ...]) -> Decision:
    """Refused because the cluster did not answer: `findings` say what could not be done."""
    return Decision(Verdict.UNAVAILABLE, findings)


def errored(reason: str) -> Decision:
    """A review that could not be decided: refused, with the reason, never silently allowed."""
    return Decision(Verdict.ERRORED, (Finding(INTERNAL_ERROR, Severity.VIOLATION, None, reason),))
