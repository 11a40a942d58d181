"""Check: pods asking Multus for secondary networks, whose interfaces no NetworkPolicy covers,
need a profile that says so (`secondaryNetworks: true`)."""

from __future__ import annotations

from webhook.core.checks.profile_label import declared_profile, profile_allows
from webhook.core.findings import Finding, Severity, detail, register
from webhook.core.namespace import NamespaceContext
from webhook.core.policy import Policy
from webhook.core.workloads import Workload

CHECK_ID = register(
    "secondary-networks",
    "pods with Multus secondary networks, which NetworkPolicies do not restrict",
    workload_check=True,
)

MULTUS_NETWORKS = "k8s.v1.cni.cncf.io/networks"
"""The pod annotation Multus reads: the networks to attach besides the cluster's."""
MULTUS_DEFAULT_NETWORK = "v1.multus-cni.io/default-network"
"""The pod annotation that replaces the pod's primary network, which NetworkPolicies may then
not cover at all."""
MULTUS_ANNOTATIONS = (MULTUS_NETWORKS, MULTUS_DEFAULT_NETWORK)


def check_secondary_networks(
    workload: Workload, policy: Policy, namespace: NamespaceContext
) -> tuple[Finding, ...]:
    annotations = workload.pod_annotations
    if not annotations or not namespace.inject.network_policies:
        return ()  # the usual case: no tuple built per review
    asked = tuple(key for key in MULTUS_ANNOTATIONS if annotations.get(key))
    if not asked:
        return ()
    if profile_allows(workload, policy, "secondary_networks", namespace):
        return ()
    profile = declared_profile(workload, policy)
    return (
        Finding(
            CHECK_ID,
            Severity.VIOLATION,
            workload.subject,
            "uses Multus networks: no NetworkPolicy restricts them",
            f"remove the pod annotation {', '.join(asked)}, or give it a profile with "
            "secondaryNetworks: true",
            detail(annotations=asked, profile=profile),
            "drop the annotation",
        ),
    )
