"""The core's two entry points: `validate` and `mutate` a review, given the namespace's labels.

Both are pure functions of (request, namespace labels, policy). The admission controller looks up
the labels, calls these, and carries out what the decision asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from webhook.core.checks import CHECKS
from webhook.core.checks.profile_label import check_profile_label, declared_profile
from webhook.core.checks.result import Finding
from webhook.core.decision import (
    Decision,
    EnsureNetworkPolicies,
    Verdict,
    allowed,
    bounded_warnings,
    denied,
)
from webhook.core.namespace import NamespaceContext, namespace_context
from webhook.core.network_policies import network_policy_intents, unexpressible
from webhook.core.policy import Inject, Mode, Policy
from webhook.core.proxy_env import inject_proxy_env, record_annotation
from webhook.core.request import AdmissionRequest
from webhook.core.workloads import CONTAINER_LISTS, Workload, find_workload, mapping_at


class Action(StrEnum):
    """Which webhook a review arrived at."""

    VALIDATE = "validate"
    MUTATE = "mutate"


EPHEMERAL_SUBRESOURCE = "ephemeralcontainers"


@dataclass(frozen=True, slots=True)
class Triage:
    """A review's subject once the cheap questions are answered: a workload worth a namespace
    lookup, or the note saying why there is nothing to do."""

    workload: Workload | None
    note: str = ""


def triage(request: AdmissionRequest, policy: Policy, action: Action) -> Triage:
    """Decide, without the namespace's labels, whether a review concerns egress-guard at all.

    The controller calls this first so that reviews egress-guard ignores never cost a lookup.
    """
    if request.namespace in policy.exempt:
        return Triage(None, "namespace exempt")
    if request.operation not in ("CREATE", "UPDATE"):
        return Triage(None, f"{request.operation or 'unknown operation'} is not checked")
    if request.sub_resource:
        if (
            action is Action.MUTATE
            and request.sub_resource == EPHEMERAL_SUBRESOURCE
            and request.kind.lower() == "pod"
        ):
            return Triage(find_workload(request.object, "Pod", request.object_name))
        return Triage(None, f"subresource {request.sub_resource} is not checked")
    if action is Action.MUTATE and (request.kind.lower() != "pod" or request.operation != "CREATE"):
        return Triage(None, "only pods are mutated, on creation")
    workload = find_workload(request.object, request.kind, request.object_name)
    if workload is None:
        return Triage(None, "not a workload")
    return Triage(workload)


def validate(
    request: AdmissionRequest,
    labels: Mapping[str, str] | None,
    policy: Policy,
    found: Triage | None = None,
) -> Decision:
    """The validating webhook's verdict: does the workload declare an egress profile?

    `found` is the request's triage when the caller has it already.
    """
    found = found or triage(request, policy, Action.VALIDATE)
    if found.workload is None:
        return allowed(note=found.note)
    namespace = namespace_context(request.namespace, labels, policy)
    if not namespace.managed:
        return allowed(note="namespace not managed")
    if request.operation == "UPDATE" and _being_deleted(request.object):
        return allowed("object is being deleted", namespace.notes, namespace.mode)
    workload = found.workload
    results = [check(workload, policy, namespace) for check in CHECKS]
    violations = tuple(finding for result in results for finding in result.violations)
    warnings = [*namespace.notes, *(f.warning for r in results for f in r.advice)]
    if request.operation == "UPDATE" and violations:
        if _already_violating(request, workload, policy, namespace):
            return _preexisting(namespace, violations, warnings, policy)
        return _apply_mode(namespace, violations, warnings, policy)
    if violations and namespace.mode is Mode.ENFORCE:
        return _apply_mode(namespace, violations, warnings, policy)
    profile = declared_profile(workload, policy)
    intents: tuple[EnsureNetworkPolicies, ...] = ()
    if request.operation == "CREATE" or _profile_changed(request, profile, policy):
        intents = network_policy_intents(request.namespace, namespace, policy, profile)
        if intents and profile is not None:
            warnings.extend(_unexpressible(profile, policy, namespace))
    return _apply_mode(namespace, violations, warnings, policy, intents)


def _preexisting(
    namespace: NamespaceContext,
    violations: tuple[Finding, ...],
    warnings: list[str],
    policy: Policy,
) -> Decision:
    """An UPDATE of an object that already lacked a valid profile: allowed, so it can be scaled,
    rolled or fixed. Enforce and warn say why in warnings; audit records it, silently."""
    if namespace.mode is Mode.AUDIT:
        return _apply_mode(namespace, violations, warnings, policy, preexisting=True)
    return Decision(
        allowed=True,
        verdict=Verdict.WARNED,
        violations=_messages(violations),
        warnings=bounded_warnings(
            [
                "egress-guard: allowed because it lacked a valid profile before this update too",
                *(f"egress-guard: {f.warning}" for f in violations),
                *warnings,
            ]
        ),
        note="pre-existing violation",
        mode=namespace.mode,
    )


def _profile_changed(request: AdmissionRequest, profile: str | None, policy: Policy) -> bool:
    """An UPDATE that gives the pods a (new) profile: its allow policy must exist too."""
    if profile is None:
        return False
    old = find_workload(request.old_object, request.kind, request.object_name)
    return old is None or declared_profile(old, policy) != profile


def _unexpressible(profile: str, policy: Policy, namespace: NamespaceContext) -> tuple[str, ...]:
    """Warnings for the profile's host names (memoised: the same for every review)."""
    injects_all = namespace.inject is Inject.ALL
    key = ("unexpressible", profile, injects_all)
    cached = policy.memo.get(key)
    if cached is None:
        cached = tuple(unexpressible(profile, policy, namespace_injects_all=injects_all))
        policy.memo[key] = cached
    return cached  # type: ignore[return-value]


def _apply_mode(
    namespace: NamespaceContext,
    violations: tuple[Finding, ...],
    warnings: list[str],
    policy: Policy,
    intents: tuple[EnsureNetworkPolicies, ...] = (),
    *,
    preexisting: bool = False,
) -> Decision:
    """The verdict the namespace's mode gives these violations (none: allowed), carrying the
    intents of an admitted workload."""
    mode = namespace.mode
    if not violations:
        return Decision(
            allowed=True,
            verdict=Verdict.ALLOWED,
            warnings=bounded_warnings(warnings),
            intents=intents,
            mode=mode,
        )
    messages = _messages(violations)
    if mode is Mode.ENFORCE:
        return denied("; ".join(messages), messages, tuple(warnings), mode=mode)
    if mode is Mode.WARN:
        defined = f"egress-guard: defined profiles: {', '.join(policy.profile_names) or '(none)'}"
        return Decision(
            allowed=True,
            verdict=Verdict.WARNED,
            violations=messages,
            warnings=bounded_warnings(
                [*(f"egress-guard (warn): {f.warning}" for f in violations), defined, *warnings]
            ),
            intents=intents,
            mode=mode,
        )
    return Decision(
        allowed=True,
        verdict=Verdict.AUDITED,
        violations=messages,
        warnings=bounded_warnings(warnings),
        audit_annotations={
            "mode": Mode.AUDIT.value,
            "violation": "; ".join(messages),
            **({"preexisting": "true"} if preexisting else {}),
        },
        intents=intents,
        mode=mode,
    )


def mutate(
    request: AdmissionRequest,
    labels: Mapping[str, str] | None,
    policy: Policy,
    found: Triage | None = None,
) -> Decision:
    """The mutating webhook's patch: proxy variables for pods that should use the proxy."""
    found = found or triage(request, policy, Action.MUTATE)
    if found.workload is None or request.object is None:
        return allowed(note=found.note or "no object")
    namespace = namespace_context(request.namespace, labels, policy)
    if not namespace.managed:
        return allowed(note="namespace not managed")
    if not _wants_proxy(namespace, policy, found.workload):
        return allowed("no proxy injection here", mode=namespace.mode)
    if policy.proxy is None:
        return allowed(
            "no proxy configured",
            ("egress-guard: proxy injection is asked for, but the policy has no proxy",),
            namespace.mode,
        )
    if request.sub_resource == EPHEMERAL_SUBRESOURCE:
        injection = inject_proxy_env(
            request.object,
            policy.proxy,
            ("ephemeralContainers",),
            skip=_ephemeral_names(request.old_object),
        )
        patch = injection.patch
    else:
        injection = inject_proxy_env(request.object, policy.proxy, CONTAINER_LISTS)
        patch = injection.patch
        if injection.injected:
            annotation = record_annotation(
                request.object,
                f"{policy.label_prefix}/proxy-injected",
                policy.proxy,
                injection.injected,
            )
            patch = (*patch, annotation)
    return Decision(
        allowed=True,
        verdict=Verdict.ALLOWED,
        patch=patch,
        warnings=bounded_warnings(injection.warnings),
        note="" if patch else "proxy variables already present",
        mode=namespace.mode,
    )


def _wants_proxy(namespace: NamespaceContext, policy: Policy, workload: Workload) -> bool:
    """The namespace asks for the proxy, or the pod's profile reaches the world only through it."""
    if namespace.inject.proxy_env:
        return True
    profile = declared_profile(workload, policy)
    return (
        namespace.inject is not Inject.NONE
        and profile is not None
        and policy.profiles[profile].proxy
    )


def _messages(findings: tuple[Finding, ...]) -> tuple[str, ...]:
    return tuple(f.message for f in findings)


def _being_deleted(obj: Any) -> bool:
    metadata = mapping_at(obj, ("metadata",))
    return bool(metadata and metadata.get("deletionTimestamp"))


def _already_violating(
    request: AdmissionRequest, workload: Workload, policy: Policy, namespace: NamespaceContext
) -> bool:
    """An object that already lacked a valid profile stays updatable (scale it, fix it, roll it)."""
    old = find_workload(request.old_object, request.kind, workload.name)
    return old is not None and not check_profile_label(old, policy, namespace).passed


def _ephemeral_names(old_pod: Any) -> frozenset[str]:
    """Ephemeral containers that already exist may not change; only new ones get variables."""
    spec = mapping_at(old_pod, ("spec",))
    items = spec.get("ephemeralContainers") if spec else None
    if not isinstance(items, list):
        return frozenset()
    return frozenset(
        item["name"] for item in items if type(item) is dict and isinstance(item.get("name"), str)
    )
