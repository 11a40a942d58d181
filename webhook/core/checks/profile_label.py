"""Check: the pods carry an egress profile label naming a profile the policy defines."""

from __future__ import annotations

import difflib

from webhook.core.checks.result import PASSED, CheckResult, Finding
from webhook.core.namespace import NamespaceContext
from webhook.core.policy import Policy
from webhook.core.workloads import Workload


def declared_profile(workload: Workload, policy: Policy) -> str | None:
    """The profile the pods declare, if it is one the policy defines."""
    value = workload.pod_labels.get(policy.profile_label)
    return value if isinstance(value, str) and value in policy.profiles else None


def check_profile_label(
    workload: Workload, policy: Policy, namespace: NamespaceContext
) -> CheckResult:
    key = policy.profile_label
    value = workload.pod_labels.get(key)
    subject = f'{workload.kind} "{workload.name}"'
    where = f"{workload.labels_path}[{key}]"
    if isinstance(value, str) and value in policy.profiles:
        return PASSED
    if isinstance(value, str) and value:
        return CheckResult(violations=(_unknown_profile(subject, where, value, policy),))
    defined = ", ".join(policy.profile_names) or "(none defined)"
    misplaced = workload.own_labels.get(key)
    if not workload.is_pod and isinstance(misplaced, str):
        return CheckResult(
            violations=(
                Finding(
                    message=(
                        f"{subject}: the label {key}={misplaced} is on the {workload.kind}'s own "
                        f"metadata.labels, but NetworkPolicies select pods: move it to "
                        f"{workload.labels_path}"
                    ),
                    warning=f"{subject}: move label {key} from metadata.labels to "
                    f"{workload.labels_path}",
                ),
            )
        )
    if key in workload.pod_annotations:
        return CheckResult(
            violations=(
                Finding(
                    message=(
                        f"{subject}: {key} is set as an annotation, but it must be a label "
                        f"(NetworkPolicies select pods by label): set {where} to one of: {defined}"
                    ),
                    warning=f"{subject}: {key} must be a label, not an annotation",
                ),
            )
        )
    return CheckResult(
        violations=(
            Finding(
                message=(
                    f"{subject} has no egress profile: set the label {key} on its pods "
                    f"({workload.labels_path}) to one of: {defined}"
                ),
                warning=f"{subject} has no egress profile: set label {key} to one of: {defined}",
            ),
        )
    )


def _unknown_profile(subject: str, where: str, value: str, policy: Policy) -> Finding:
    defined = ", ".join(policy.profile_names) or "(none defined)"
    closest = difflib.get_close_matches(value, policy.profile_names, n=1, cutoff=0.0)
    suggestion = f'; did you mean "{closest[0]}"?' if closest else "."
    return Finding(
        message=(
            f'{subject}: egress profile "{value}" ({where}) is not defined{suggestion} '
            f"Defined profiles: {defined}"
        ),
        warning=f'{subject}: unknown egress profile "{value}"{suggestion.rstrip(".")}',
    )
