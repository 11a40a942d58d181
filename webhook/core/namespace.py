"""A namespace's standing with egress-guard, derived from its labels and the policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.backends import (
    Backend,
    backends_label_value,
    parse_backends,
)
from webhook.core.findings import (
    NAMESPACE_LABELS,
    NOT_NETWORK_ENFORCED,
    Finding,
    Severity,
    detail,
)
from webhook.core.policy import Inject, Mode, Policy
from webhook.core.raw_object import mapping_at

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
    `notes` are findings about label values that had to be interpreted (a typo in `mode`, say):
    they become warnings, so that a namespace owner sees them on their next `kubectl apply`.
    """

    mode: Mode | None
    inject: Inject
    exempt: bool = False
    notes: tuple[Finding, ...] = ()
    name: str = ""
    backends: tuple[Backend, ...] = (Backend.NETWORKPOLICY,)
    """What the namespace's egress objects are rendered into: the policy file's `backends`, or
    the part of them its `backends` label names."""

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
        return EXEMPT
    raw_mode = labels.get(policy.mode_label) if labels else None
    if labels is None or raw_mode is None:
        return UNMANAGED
    notes: list[Finding] = []
    try:
        mode = Mode(raw_mode)
    except ValueError:
        mode = Mode.ENFORCE
        notes.append(_label_note(name, policy.mode_label, raw_mode, Mode, mode.value))
    raw_inject = labels.get(policy.inject_label)
    inject = DEFAULT_INJECT[mode]
    if raw_inject is not None:
        try:
            inject = Inject(raw_inject)
        except ValueError:
            notes.append(_label_note(name, policy.inject_label, raw_inject, Inject, inject.value))
    if mode is Mode.ENFORCE and not inject.network_policies:
        notes.append(_labels_only(name, inject, policy))
    backends = policy.backend_set
    raw_backends = labels.get(policy.backends_label)
    if raw_backends is not None:
        backends, note = _narrowed(name, raw_backends, policy)
        if note is not None:
            notes.append(note)
    return NamespaceContext(
        mode=mode, inject=inject, notes=tuple(notes), name=name, backends=backends
    )


def _narrowed(
    namespace: str, value: str, policy: Policy
) -> tuple[tuple[Backend, ...], Finding | None]:
    """The backends a namespace's label chooses among the policy file's. A value that is not a
    list of backends, or names one the file does not, gets every backend of the file: a typo must
    not take enforcement away."""
    chosen = parse_backends(value)
    if chosen is not None and set(chosen) <= set(policy.backend_set):
        return chosen, None
    offered = backends_label_value(policy.backend_set)
    note = Finding(
        NAMESPACE_LABELS,
        Severity.ADVICE,
        None,
        f"namespace label {policy.backends_label}={value!r} is not some of {offered}; using all",
        detail=detail(namespace=namespace, label=policy.backends_label, value=value, used=offered),
    )
    return policy.backend_set, note


def _labels_only(namespace: str, inject: Inject, policy: Policy) -> Finding:
    """An enforcing namespace that creates no NetworkPolicies checks labels, and nothing at the
    network level holds a pod to its profile: said on every admission there (memoised)."""
    key = (_labels_only, namespace, inject)
    cached = policy.memo.get(key)
    if cached is None:
        cached = Finding(
            NOT_NETWORK_ENFORCED,
            Severity.ADVICE,
            None,
            f"namespace {namespace} enforces labels only (inject: {inject.value}): "
            "no NetworkPolicy holds pods to their profile",
            f"label it {policy.inject_label}=networkpolicy (or all) to enforce egress",
            detail(namespace=namespace, inject=inject.value),
        )
        policy.memo[key] = cached
    return cached  # type: ignore[return-value]


def namespace_labels(obj: Any) -> dict[str, str]:
    """A Namespace object's labels, as text."""
    labels = mapping_at(obj, "metadata", "labels")
    return {str(k): str(v) for k, v in labels.items()} if labels else {}


EXEMPT = NamespaceContext(mode=None, inject=Inject.NONE, exempt=True)
UNMANAGED = NamespaceContext(mode=None, inject=Inject.NONE)


def _label_note(
    namespace: str, key: str, value: str, values: type[Mode] | type[Inject], used: str
) -> Finding:
    """A label value egress-guard had to interpret. The namespace is named in the detail, not as
    the subject: the warning must say what was done about it within 120 characters."""
    names = [v.value for v in values]
    allowed = f"{', '.join(names[:-1])} or {names[-1]}"
    treated = "treated as" if values is Mode else "using"
    return Finding(
        NAMESPACE_LABELS,
        Severity.ADVICE,
        None,
        f"namespace label {key}={value!r} is not {allowed}; {treated} {used}",
        detail=detail(namespace=namespace, label=key, value=value, used=used),
    )
