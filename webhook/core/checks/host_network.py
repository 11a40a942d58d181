"""Check: NetworkPolicies do not apply to pods on the node's network; say so where it matters."""

from __future__ import annotations

from webhook.core.findings import Finding, Severity, register
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
    if workload.pod_spec.get("hostNetwork") is not True or not namespace.inject.network_policies:
        return ()
    return (
        Finding(
            CHECK_ID,
            Severity.ADVICE,
            workload.subject,
            "uses hostNetwork: NetworkPolicies do not restrict its egress",
            "run it without hostNetwork",
        ),
    )
