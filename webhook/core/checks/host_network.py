"""Check: pods on the node's network, which no NetworkPolicy restricts, need a profile that says
so (`hostNetwork: true`, for node agents)."""

from __future__ import annotations

from webhook.core.checks.profile_label import declared_profile, profile_allows
from webhook.core.findings import Finding, Severity, detail, register
from webhook.core.namespace import NamespaceContext
from webhook.core.policy import Policy
from webhook.core.workloads import Workload

CHECK_ID = register(
    "host-network",
    "pods on the node's network, which NetworkPolicies do not restrict",
    workload_check=True,
)


def check_host_network(
    workload: Workload, policy: Policy, namespace: NamespaceContext
) -> tuple[Finding, ...]:
    """A violation where the namespace enforces with NetworkPolicies: the pod's egress would be
    the node's, whatever its profile declares."""
    if workload.pod_spec.get("hostNetwork") is not True or not namespace.inject.network_policies:
        return ()
    if profile_allows(workload, policy, "host_network", namespace):
        return ()
    profile = declared_profile(workload, policy)
    return (
        Finding(
            CHECK_ID,
            Severity.VIOLATION,
            workload.subject,
            "uses hostNetwork: NetworkPolicies do not restrict its egress",
            "run it without hostNetwork, or give it a profile with hostNetwork: true "
            "(for node agents)",
            detail(profile=profile),
            "drop hostNetwork",
        ),
    )
