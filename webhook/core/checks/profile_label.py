"""Check: the pods carry an egress profile label naming a profile the policy defines."""

from __future__ import annotations

from webhook.core.findings import Finding, Severity, detail, register
from webhook.core.namespace import NamespaceContext
from webhook.core.policy import Policy
from webhook.core.suggestions import closest
from webhook.core.workloads import Workload

CHECK_ID = register(
    "profile-label",
    "the pods declare an egress profile the policy file defines",
    workload_check=True,
)


def declared_profile(workload: Workload, policy: Policy) -> str | None:
    """The profile the pods declare, if it is one the policy defines."""
    value = workload.pod_labels.get(policy.profile_label)
    return value if isinstance(value, str) and value in policy.profiles else None


def profile_allows(
    workload: Workload, policy: Policy, setting: str, namespace: NamespaceContext
) -> bool:
    """The pods declare a defined profile whose boolean `setting` is on (`host_network`...) in
    this namespace (one the profile lists)."""
    profile = declared_profile(workload, policy)
    if profile is None:
        return False
    settings = policy.profiles[profile]
    return getattr(settings, setting) is True and namespace.name in settings.namespaces


def defined_profiles(policy: Policy) -> str:
    return ", ".join(policy.profile_names) or "(none defined)"


def _short_hint(policy: Policy) -> str:
    return f"set label {policy.profile_label} to one of: {defined_profiles(policy)}"


def check_profile_label(
    workload: Workload, policy: Policy, namespace: NamespaceContext
) -> tuple[Finding, ...]:
    key = policy.profile_label
    value = workload.pod_labels.get(key)
    if isinstance(value, str) and value in policy.profiles:
        return ()
    if isinstance(value, str) and value:
        return (_undefined_profile(workload, value, policy),)
    misplaced = workload.own_labels.get(key)
    if not workload.is_pod and isinstance(misplaced, str):
        return (_on_own_metadata(workload, misplaced, policy),)
    if key in workload.pod_annotations:
        return (_annotation(workload, policy),)
    return (
        Finding(
            CHECK_ID,
            Severity.VIOLATION,
            workload.subject,
            "has no egress profile",
            f"set the label {key} on its pods ({workload.labels_path}) to one of: "
            f"{defined_profiles(policy)}",
            detail(problem="missing", label=key, path=workload.labels_path),
            _short_hint(policy),
        ),
    )


def _undefined_profile(workload: Workload, value: str, policy: Policy) -> Finding:
    key = policy.profile_label
    suggestion = closest(value, policy.profile_names)
    where = f"{workload.labels_path}[{key}]"
    did_you_mean = f' (did you mean "{suggestion}"?)' if suggestion else ""
    return Finding(
        CHECK_ID,
        Severity.VIOLATION,
        workload.subject,
        f'declares egress profile "{value}", which is not defined{did_you_mean}',
        f"set {where} to one of: {defined_profiles(policy)}",
        detail(
            problem="undefined",
            label=key,
            path=workload.labels_path,
            value=value,
            suggestion=suggestion,
        ),
        _short_hint(policy),
    )


def _on_own_metadata(workload: Workload, value: str, policy: Policy) -> Finding:
    key = policy.profile_label
    return Finding(
        CHECK_ID,
        Severity.VIOLATION,
        workload.subject,
        f"has the label {key}={value} on its own metadata.labels, but NetworkPolicies select pods",
        f"move it to {workload.labels_path}",
        detail(problem="not-on-pods", label=key, path=workload.labels_path, value=value),
    )


def _annotation(workload: Workload, policy: Policy) -> Finding:
    key = policy.profile_label
    return Finding(
        CHECK_ID,
        Severity.VIOLATION,
        workload.subject,
        f"sets {key} as an annotation, but it must be a label",
        f"set {workload.labels_path}[{key}] to one of: {defined_profiles(policy)} "
        "(NetworkPolicies select pods by label)",
        detail(problem="annotation", label=key, path=workload.labels_path),
        _short_hint(policy),
    )
