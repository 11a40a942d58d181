"""Checks: pure functions of a workload, the namespace and the policy, one per file.

As in Pod Security Admission, a check never decides the verdict: it reports what is wrong (a
violation, which denies under enforce) and what is worth knowing (advice, which only warns). The
evaluator runs every check so that one `kubectl apply` shows every reason at once.
"""

from __future__ import annotations

from collections.abc import Callable

from webhook.core.checks.host_network import check_host_network
from webhook.core.checks.profile_label import check_profile_label
from webhook.core.checks.result import CheckResult
from webhook.core.namespace import NamespaceContext
from webhook.core.policy import Policy
from webhook.core.workloads import Workload

Check = Callable[[Workload, Policy, NamespaceContext], CheckResult]

CHECKS: tuple[Check, ...] = (check_profile_label, check_host_network)
