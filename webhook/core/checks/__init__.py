"""Workload checks: pure functions of a workload, the namespace and the policy, one per file.

As in Pod Security Admission, a check never decides the verdict: it returns findings, violations
(which deny under enforce) and advice (which only warns), and nothing (an empty tuple) when the
workload passes. The evaluator runs every check so that one `kubectl apply` shows every reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from webhook.core.checks import host_network, profile_label, secondary_networks
from webhook.core.findings import Finding
from webhook.core.namespace import NamespaceContext
from webhook.core.policy import Policy
from webhook.core.workloads import Workload

CheckFunction = Callable[[Workload, Policy, NamespaceContext], tuple[Finding, ...]]


@dataclass(frozen=True, slots=True)
class Check:
    """A registered check id and the function that runs it."""

    id: str
    run: CheckFunction


CHECKS: tuple[Check, ...] = (
    Check(profile_label.CHECK_ID, profile_label.check_profile_label),
    Check(host_network.CHECK_ID, host_network.check_host_network),
    Check(secondary_networks.CHECK_ID, secondary_networks.check_secondary_networks),
)


def run_checks(
    workload: Workload, policy: Policy, namespace: NamespaceContext
) -> tuple[Finding, ...]:
    """Every check's findings, in check order: violations and advice alike."""
    found: tuple[Finding, ...] = ()
    for check in CHECKS:
        result = check.run(workload, policy, namespace)
        if result:
            found += result
    return found
