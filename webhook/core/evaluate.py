"""The core's two entry points: `validate` and `mutate` a review, given the namespace's labels.

Both are pure functions of (request, namespace labels, policy). The admission controller looks up
the labels, calls these, and carries out what the decision asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from webhook.core.checks import run_checks
from webhook.core.checks.profile_label import declared_profile
from webhook.core.decision import Decision, EnsureNetworkPolicies, Note, Verdict, allowed, denied
from webhook.core.egress_objects import egress_intents, profile_findings
from webhook.core.findings import (
    DEFINED_PROFILES,
    MALFORMED_OBJECT,
    PREEXISTING,
    PROXY_ENV,
    Finding,
    Severity,
    Subject,
    detail,
)
from webhook.core.namespace import NamespaceContext, namespace_context
from webhook.core.owned_pods import relabelled_pod
from webhook.core.policy import Inject, Mode, Policy
from webhook.core.proxy_env import inject_proxy_env, record_annotation
from webhook.core.raw_object import mapping_at
from webhook.core.request import AdmissionRequest
from webhook.core.workloads import CONTAINER_LISTS, Workload, builtin_kind, find_workload


class Action(StrEnum):
    """Which webhook a review arrived at."""

    VALIDATE = "validate"
    MUTATE = "mutate"


EPHEMERAL_SUBRESOURCE = "ephemeralcontainers"
STATUS_SUBRESOURCE = "status"
"""A Pod's status UPDATE can change its labels, and the API server keeps them: reviewed as the
Pod's own UPDATE (every other subresource of a workload keeps its pod labels)."""


@dataclass(frozen=True, slots=True)
class Triage:
    """A review's subject once the cheap questions are answered: a workload worth a namespace
    lookup, or the note saying why there is nothing to do."""

    workload: Workload | None
    note: Note | None = None
    malformed: bool = False
    """A workload kind whose object is not an object (null, a list, a string): never admitted
    where the namespace enforces."""


def triage(request: AdmissionRequest, policy: Policy, action: Action = Action.VALIDATE) -> Triage:
    """Decide, without the namespace's labels, whether a review concerns egress-guard at all.

    The controller calls this first so that reviews egress-guard ignores never cost a lookup.
    """
    if request.namespace in policy.exempt:
        return Triage(None, Note.EXEMPT)
    if request.operation not in ("CREATE", "UPDATE"):
        return Triage(None, Note.OPERATION_NOT_CHECKED)
    is_pod = request.kind.lower() == "pod"
    if request.sub_resource:
        if action is Action.MUTATE and request.sub_resource == EPHEMERAL_SUBRESOURCE and is_pod:
            return Triage(find_workload(request.object, request.kind))  # mutation names none
        if not (
            action is Action.VALIDATE
            and request.sub_resource == STATUS_SUBRESOURCE
            and is_pod
            and request.operation == "UPDATE"
        ):
            return Triage(None, Note.SUBRESOURCE_NOT_CHECKED)
    if action is Action.MUTATE and (not is_pod or request.operation != "CREATE"):
        return Triage(None, Note.NOT_MUTATED)
    workload = find_workload(request.object, request.kind, request.object_name)
    if workload is None:
        if request.object is None and _reviewed_kind(request, policy):
            return Triage(None, Note.MALFORMED, malformed=action is Action.VALIDATE)
        return Triage(None, Note.NOT_A_WORKLOAD)
    return Triage(workload)


def _reviewed_kind(request: AdmissionRequest, policy: Policy) -> bool:
    """The request names a kind the workload webhooks are sent (the group as sent, or any
    group when a crafted request leaves it out)."""
    if policy.reviewed_kind(request.group, request.kind) is not None:
        return True
    return not request.group and builtin_kind(None, request.kind) is not None


def validate(
    request: AdmissionRequest,
    labels: Mapping[str, str] | None,
    policy: Policy,
    found: Triage | None = None,
) -> Decision:
    """The validating webhook's verdict: does the workload declare an egress profile?

    `found` is the request's triage when the caller has it already.
    """
    found = found or triage(request, policy)
    if found.workload is None and not found.malformed:
        return allowed(found.note)
    namespace = namespace_context(request.namespace, labels, policy)
    if not namespace.managed:
        return allowed(Note.NOT_MANAGED)
    if found.workload is None:
        return _apply_mode(namespace, (_malformed(request),), policy)
    workload = found.workload
    updated = request.operation == "UPDATE"
    relabelled = relabelled_pod(request, workload, policy) if updated else ()
    if updated and _being_deleted(request.object):
        if relabelled:  # a Pod being deleted may run on for its grace period
            return _apply_mode(namespace, relabelled, policy)
        return allowed(Note.BEING_DELETED, namespace.notes, namespace.mode)
    findings = run_checks(workload, policy, namespace)
    if relabelled:
        return _apply_mode(namespace, (*relabelled, *findings), policy)
    if _violating(findings) and (updated or namespace.mode is Mode.ENFORCE):
        if updated and _already_violating(request, policy, namespace):
            return _preexisting(workload, namespace, findings)
        return _apply_mode(namespace, findings, policy)  # no intents: nothing new is admitted
    profile = declared_profile(workload, policy)
    if updated and not (profile is not None and _profile_changed(request, profile, policy)):
        return _apply_mode(namespace, findings, policy)
    intents = egress_intents(request.namespace, namespace, policy, profile)
    if intents and profile is not None:
        findings += profile_findings(request.namespace, profile, namespace, policy)
    return _apply_mode(namespace, findings, policy, intents)


def _malformed(request: AdmissionRequest) -> Finding:
    return Finding(
        MALFORMED_OBJECT,
        Severity.VIOLATION,
        Subject(request.kind, request.object_name),
        "was sent without an object to check (null, a list or a string)",
        "send the object as the API server does",
        detail(operation=request.operation),
    )


def _preexisting(
    workload: Workload, namespace: NamespaceContext, findings: tuple[Finding, ...]
) -> Decision:
    """An UPDATE of an object that already lacked a valid profile: allowed, so it can be scaled,
    rolled or fixed. Enforce and warn say why in warnings; audit records it, silently."""
    mode = namespace.mode
    if mode is Mode.AUDIT:
        return Decision(Verdict.AUDITED, (*namespace.notes, *findings), mode=mode, preexisting=True)
    notice = Finding(
        PREEXISTING,
        Severity.ADVICE,
        workload.subject,
        "is allowed because it lacked a valid profile before this update too",
    )
    return Decision(
        Verdict.WARNED,
        (notice, *findings, *namespace.notes),
        mode=mode,
        note=Note.PREEXISTING,
        preexisting=True,
    )


def _violating(findings: tuple[Finding, ...]) -> bool:
    return bool(findings) and any(f.severity is Severity.VIOLATION for f in findings)


def _profile_changed(request: AdmissionRequest, profile: str, policy: Policy) -> bool:
    """An UPDATE that gives the pods a (new) profile: its allow policy must exist too."""
    old = find_workload(request.old_object, request.kind)
    return old is None or declared_profile(old, policy) != profile


def _defined_profiles(policy: Policy) -> Finding:
    """Which profiles exist, said beside the violations warn mode admits (memoised)."""
    cached = policy.memo.get(_defined_profiles)
    if cached is None:
        cached = Finding(
            DEFINED_PROFILES,
            Severity.ADVICE,
            None,
            f"defined profiles: {', '.join(policy.profile_names) or '(none)'}",
        )
        policy.memo[_defined_profiles] = cached
    return cached  # type: ignore[return-value]


def _apply_mode(
    namespace: NamespaceContext,
    findings: tuple[Finding, ...],
    policy: Policy,
    intents: tuple[EnsureNetworkPolicies, ...] = (),
) -> Decision:
    """The verdict the namespace's mode gives these findings (no violation: allowed), carrying
    the intents of an admitted workload."""
    mode = namespace.mode
    if not _violating(findings):
        if namespace.notes:
            findings = (*namespace.notes, *findings)
        return Decision(Verdict.ALLOWED, findings, intents=intents, mode=mode)
    if mode is Mode.ENFORCE:
        return denied((*namespace.notes, *findings), mode)
    if mode is Mode.WARN:
        violations = tuple(f for f in findings if f.severity is Severity.VIOLATION)
        advice = tuple(f for f in findings if f.severity is Severity.ADVICE)
        return Decision(
            Verdict.WARNED,
            (*violations, _defined_profiles(policy), *namespace.notes, *advice),
            intents=intents,
            mode=mode,
        )
    return Decision(Verdict.AUDITED, (*namespace.notes, *findings), intents=intents, mode=mode)


def mutate(
    request: AdmissionRequest,
    labels: Mapping[str, str] | None,
    policy: Policy,
    found: Triage | None = None,
) -> Decision:
    """The mutating webhook's patch: proxy variables for pods that should use the proxy."""
    found = found or triage(request, policy, Action.MUTATE)
    if found.workload is None or request.object is None:
        return allowed(found.note)
    namespace = namespace_context(request.namespace, labels, policy)
    if not namespace.managed:
        return allowed(Note.NOT_MANAGED)
    if not _wants_proxy(namespace, policy, found.workload):
        return allowed(Note.NO_INJECTION, mode=namespace.mode)
    if policy.proxy is None:
        missing = Finding(
            PROXY_ENV,
            Severity.ADVICE,
            None,
            "proxy injection is asked for, but the policy file has no proxy section",
        )
        return allowed(Note.NO_PROXY_CONFIGURED, (missing,), namespace.mode)
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
        Verdict.ALLOWED,
        injection.findings,
        patch=patch,
        note=None if patch else Note.ALREADY_INJECTED,
        mode=namespace.mode,
    )


def _wants_proxy(namespace: NamespaceContext, policy: Policy, workload: Workload) -> bool:
    """Pods get the proxy variables where they can reach the proxy through it.

    `inject: proxy` sets no NetworkPolicy, so every pod reaches the proxy. Under `all`, only a
    profile that uses the proxy (`proxy: true`, or host names) has a route to it: any other pod
    would send its traffic to a proxy it cannot reach. Under `networkpolicy`, a profile that
    sets `proxy: true` reaches the world only through it.
    """
    if namespace.inject is Inject.PROXY:
        return True
    if namespace.inject is Inject.NONE:
        return False
    profile = declared_profile(workload, policy)
    if profile is None:
        return False
    settings = policy.profiles[profile]
    return settings.uses_proxy if namespace.inject is Inject.ALL else settings.proxy


def _being_deleted(obj: Any) -> bool:
    metadata = mapping_at(obj, "metadata")
    return bool(metadata and metadata.get("deletionTimestamp"))


def _already_violating(
    request: AdmissionRequest, policy: Policy, namespace: NamespaceContext
) -> bool:
    """An object that already failed the checks stays updatable (scale it, fix it, roll it)."""
    old = find_workload(request.old_object, request.kind)
    return old is not None and _violating(run_checks(old, policy, namespace))


def _ephemeral_names(old_pod: Any) -> frozenset[str]:
    """Ephemeral containers that already exist may not change; only new ones get variables."""
    spec = mapping_at(old_pod, "spec")
    items = spec.get("ephemeralContainers") if spec else None
    if not isinstance(items, list):
        return frozenset()
    return frozenset(
        item["name"] for item in items if type(item) is dict and isinstance(item.get("name"), str)
    )
