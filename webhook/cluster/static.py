"""Stand-ins for the cluster where there is none: local `serve`, the offline CLI, and tests.

Namespace labels come from the policy file's `namespaces` table (plus any the caller adds), and
NetworkPolicies are reported, not applied: egress-guard says what it would create.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from webhook.admission.ports import EnsureResult, PolicySource, WorkloadListing
from webhook.core.decision import EnsureNetworkPolicies


class StaticNamespaceSource:
    """Namespace labels from fixed tables: `overrides` first, then the policy's `namespaces`,
    then `default` (the labels assumed for any other namespace, e.g. from `check --mode`)."""

    def __init__(
        self,
        policies: PolicySource,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
        default: Mapping[str, str] | None = None,
    ) -> None:
        self._policies = policies
        self.overrides = dict(overrides or {})
        self._default = default

    def labels(self, namespace: str) -> Mapping[str, str] | None:
        if namespace in self.overrides:
            return self.overrides[namespace]
        table = self._policies.current().static_namespace_labels(namespace)
        return table if table is not None else self._default


class ReportingNetworkPolicyApplier:
    """Applies nothing: returns each intent's policies as `reported`, which the controller turns
    into a warning and the decision log into a field."""

    def ensure(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        return EnsureResult(reported=intent.names)

    def check(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        return EnsureResult(reported=intent.names)


class StaticWorkloadSource:
    """A namespace's workloads from a fixed table (empty: no cluster, so nothing runs)."""

    def __init__(self, workloads: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> None:
        self._workloads = {name: tuple(objs) for name, objs in (workloads or {}).items()}

    def workloads(self, namespace: str) -> WorkloadListing:
        return WorkloadListing(self._workloads.get(namespace, ()))
