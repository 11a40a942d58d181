"""Check: NetworkPolicies do not apply to pods on the node's network; say so where it matters."""

from __future__ import annotations

from webhook.core.checks.result import PASSED, CheckResult, Finding
from webhook.core.namespace import NamespaceContext
from webhook.core.policy import Policy
from webhook.core.workloads import Workload


def check_host_network(
    workload: Workload, policy: Policy, namespace: NamespaceContext
) -> CheckResult:
    if workload.pod_spec.get("hostNetwork") is not True or not namespace.inject.network_policies:
        return PASSED
    subject = f'{workload.kind} "{workload.name}"'
    return CheckResult(
        advice=(
            Finding(
                message=(
                    f"{subject} uses hostNetwork: NetworkPolicies do not apply to it, so its "
                    "egress is not restricted by the generated policies"
                ),
                warning=f"{subject} uses hostNetwork: NetworkPolicies do not restrict its egress",
            ),
        )
    )
