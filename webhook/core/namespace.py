"""A namespace's standing with egress-guard, derived from its labels and the policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from webhook.core.policy import Inject, Mode, Policy

DEFAULT_INJECT = {
    Mode.ENFORCE: Inject.NETWORKPOLICY,
    Mode.WARN: Inject.NONE,
    Mode.AUDIT: Inject.NONE,
}
"""Enforce makes egress true by default; the preview modes change nothing unless asked."""


@dataclass(frozen=True, slots=True)
class NamespaceContext:
    """Whether and how egress-guard manages a namespace.

    `mode` is None for a namespace that is not managed (no mode label, exempt, or unknown).
    `notes` carry label values that had to be interpreted (a typo in `mode`, say): they become
    warnings, so that a namespace owner sees them on their next `kubectl apply`.
    """

    name: str
    mode: Mode | None
    inject: Inject
    exempt: bool = False
    notes: tuple[str, ...] = ()

    @property
    def managed(self) -> bool:
        return self.mode is not None


def namespace_context(
    name: str, labels: Mapping[str, str] | None, policy: Policy
) -> NamespaceContext:
    """Read a namespace's mode and effective inject setting from its labels.

    An unrecognised `mode` value is treated as enforce, as Pod Security Admission treats an invalid
    level as the most restrictive: a typo must not silently switch protection off. An unrecognised
    `inject` value falls back to the mode's default.
    """
    if name in policy.exempt:
        return NamespaceContext(name=name, mode=None, inject=Inject.NONE, exempt=True)
    raw_mode = labels.get(policy.mode_label) if labels else None
    if raw_mode is None:
        return NamespaceContext(name=name, mode=None, inject=Inject.NONE)
    notes: list[str] = []
    try:
        mode = Mode(raw_mode)
    except ValueError:
        mode = Mode.ENFORCE
        notes.append(
            f"egress-guard: namespace label {policy.mode_label}={raw_mode!r} is not "
            "enforce, warn or audit; treated as enforce"
        )
    raw_inject = labels.get(policy.inject_label) if labels else None
    inject = DEFAULT_INJECT[mode]
    if raw_inject is not None:
        try:
            inject = Inject(raw_inject)
        except ValueError:
            notes.append(
                f"egress-guard: namespace label {policy.inject_label}={raw_inject!r} is not "
                f"networkpolicy, proxy, all or none; using {inject.value}"
            )
    return NamespaceContext(name=name, mode=mode, inject=inject, notes=tuple(notes))
