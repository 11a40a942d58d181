"""How long each step of an admission may take, derived from the webhook timeouts it must fit in.

The API server waits `timeoutSeconds` for a webhook's answer, then applies the failure policy
(an enforcing namespace's workload is refused). Every call egress-guard makes while the API
server waits is bounded by a budget computed here from the timeout of the webhook it serves, so
that changing a timeout cannot leave a budget that no longer fits; the rendered webhook
configurations (`webhook.deploy`) take their `timeoutSeconds` from here too.
"""

from __future__ import annotations

VALIDATION_TIMEOUT_S = 5
"""Validation may read the namespace and create NetworkPolicies before it answers."""
MUTATION_TIMEOUT_S = 3
NAMESPACE_PREVIEW_TIMEOUT_S = 3

ANSWER_MARGIN_S = 1.0
"""Kept back from every timeout for reading the review, deciding, answering, and the network."""

NAMESPACE_LOOKUP_BUDGET_S = (VALIDATION_TIMEOUT_S - ANSWER_MARGIN_S) / 4
"""One GET of a namespace not (or no longer) known from the watch."""
NETWORK_POLICY_ENSURE_BUDGET_S = (VALIDATION_TIMEOUT_S - ANSWER_MARGIN_S) / 2
"""Creating or repairing the NetworkPolicies a workload needs; the lookup may come first."""
WORKLOAD_LIST_BUDGET_S = NAMESPACE_PREVIEW_TIMEOUT_S - ANSWER_MARGIN_S
"""Listing a namespace's workloads for the namespace preview."""
