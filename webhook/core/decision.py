"""What the core decides, as data: a verdict, its reasons, and what should happen because of it.

The helpers mirror controller-runtime's admission responses (`Allowed`, `Denied`, `Patched`,
`Errored`) so that every place that answers a review speaks the same small vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from webhook.core.json_patch import PatchOp
from webhook.core.policy import Mode

MAX_WARNING_CHARS = 120
"""The API server passes on warnings up to this length; longer ones are truncated or dropped."""

MAX_WARNINGS = 6
"""More warnings than this are noise on a terminal; the rest is summarised in the last one."""


class Verdict(StrEnum):
    """How a review ended, for people and for logs and metrics."""

    ALLOWED = "allowed"
    DENIED = "denied"
    WARNED = "warned"
    AUDITED = "audited"
    ERRORED = "errored"


@dataclass(frozen=True, slots=True)
class EnsureNetworkPolicies:
    """Intent: these NetworkPolicies must exist (as rendered) before the workload is admitted.

    `required` says that admission must fail if they cannot be ensured (enforce mode: admitting
    the workload anyway would leave its egress open). The manifests are shared: read-only.
    """

    namespace: str
    manifests: tuple[Mapping[str, Any], ...]
    required: bool

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(str(m["metadata"]["name"]) for m in self.manifests)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one review, before it is put on the wire."""

    allowed: bool
    verdict: Verdict
    code: int = 200
    message: str = ""
    violations: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    patch: tuple[PatchOp, ...] = ()
    audit_annotations: Mapping[str, str] = field(default_factory=dict)
    intents: tuple[EnsureNetworkPolicies, ...] = ()
    note: str = ""
    """Why nothing was checked, when nothing was (for the decision log: `namespace not managed`)."""
    mode: Mode | None = None
    """The namespace's mode, where it is managed (for logs, metrics and events)."""

    def with_warnings(self, *extra: str) -> Decision:
        return replace(self, warnings=bounded_warnings((*self.warnings, *extra)))


def allowed(note: str = "", warnings: tuple[str, ...] = (), mode: Mode | None = None) -> Decision:
    return Decision(allowed=True, verdict=Verdict.ALLOWED, note=note, warnings=warnings, mode=mode)


def denied(
    message: str,
    violations: tuple[str, ...],
    warnings: tuple[str, ...] = (),
    mode: Mode | None = None,
) -> Decision:
    return Decision(
        allowed=False,
        verdict=Verdict.DENIED,
        code=403,
        message=message,
        violations=violations,
        warnings=bounded_warnings(warnings),
        mode=mode,
    )


def errored(code: int, message: str) -> Decision:
    """A review that could not be decided: refused, with the reason, never silently allowed."""
    return Decision(allowed=False, verdict=Verdict.ERRORED, code=code, message=message)


def shorten(text: str, limit: int = MAX_WARNING_CHARS) -> str:
    """Cut text to `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def bounded_warnings(warnings: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """At most MAX_WARNINGS warnings of at most MAX_WARNING_CHARS each, without repeats."""
    unique = tuple(dict.fromkeys(shorten(w) for w in warnings if w))
    if len(unique) <= MAX_WARNINGS:
        return unique
    kept = unique[: MAX_WARNINGS - 1]
    return (*kept, f"egress-guard: {len(unique) - len(kept)} more warnings not shown")
