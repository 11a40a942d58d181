"""A managed namespace's workloads as a report: one result per workload, in the schema Kyverno
installs and Policy Reporter reads (`wgpolicyk8s.io/v1alpha2` PolicyReport), or its successor
OpenReports (`openreports.io/v1alpha1` Report). Pure: the reconciler lists and writes.

Each workload is judged as the validating webhook would judge it if it were applied now: `fail`
for a violation (no profile, an unknown one), `warn` for advice (hostNetwork, say), `pass`
otherwise. `policy` is egress-guard, `rule` the check id that decided, `resources` the workload.
A result carries no timestamp: a report whose results did not change is not rewritten.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.checks import run_checks
from webhook.core.checks.profile_label import CHECK_ID as PROFILE_LABEL
from webhook.core.checks.profile_label import declared_profile
from webhook.core.findings import Severity
from webhook.core.namespace import NamespaceContext
from webhook.core.network_policies import MANAGED_BY, MANAGED_BY_LABEL
from webhook.core.ownership import controlled_by_a_reviewed_kind
from webhook.core.policy import Policy
from webhook.core.raw_object import JsonObject, section
from webhook.core.wording import sentence
from webhook.core.workloads import WorkloadKind, find_workload

REPORT_NAME = "egress-guard"
SOURCE = "egress-guard"
RESULTS = ("pass", "fail", "warn", "error", "skip")
MAX_RESULTS = 1000
"""Results kept in one report (fail first, then warn, then pass): a namespace of thousands of
workloads would otherwise outgrow what etcd stores in one object. The summary counts them all."""
_ORDER = {"fail": 0, "warn": 1, "pass": 2}


@dataclass(frozen=True, slots=True)
class ReportKind:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


REPORT_KINDS: Mapping[str, ReportKind] = {
    "policyreport": ReportKind("wgpolicyk8s.io", "v1alpha2", "policyreports", "PolicyReport"),
    "openreports": ReportKind("openreports.io", "v1alpha1", "reports", "Report"),
}
"""By the policy file's `reports.format`."""


@dataclass(frozen=True, slots=True)
class WorkloadResult:
    kind: str
    api_version: str
    name: str
    uid: str
    result: str
    rule: str
    message: str

    def as_result(self, namespace: str) -> JsonObject:
        return {
            "policy": SOURCE,
            "rule": self.rule,
            "result": self.result,
            "message": self.message,
            "source": SOURCE,
            "scored": True,
            "severity": {"fail": "high", "warn": "medium"}.get(self.result, "info"),
            "resources": [
                {
                    "apiVersion": self.api_version,
                    "kind": self.kind,
                    "name": self.name,
                    "namespace": namespace,
                    "uid": self.uid,
                }
            ],
        }


def workload_result(
    kind: WorkloadKind, obj: Mapping[str, Any], policy: Policy, namespace: NamespaceContext
) -> WorkloadResult | None:
    """The workload's result, or None for one a controller owns or one being deleted."""
    metadata = section(obj, "metadata")
    if controlled_by_a_reviewed_kind(obj, policy) or metadata.get("deletionTimestamp"):
        return None
    workload = find_workload(obj, kind.kind, str(metadata.get("name") or ""), kind.group)
    if workload is None:
        return None
    findings = run_checks(workload, policy, namespace)
    violations = [f for f in findings if f.severity is Severity.VIOLATION]
    advice = [f for f in findings if f.severity is Severity.ADVICE]
    if violations:
        result, rule, message = "fail", violations[0].check, "; ".join(map(sentence, violations))
    elif advice:
        result, rule, message = "warn", advice[0].check, "; ".join(map(sentence, advice))
    else:
        profile = declared_profile(workload, policy)
        result, rule, message = "pass", PROFILE_LABEL, f"declares the egress profile {profile}"
    return WorkloadResult(
        kind=kind.kind,
        api_version=kind.api_version,
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        result=result,
        rule=rule,
        message=message,
    )


def render_report(
    namespace: str, results: Iterable[WorkloadResult], report_kind: ReportKind
) -> JsonObject:
    """The namespace's report: results by severity, then kind and name, at most MAX_RESULTS."""
    ordered = sorted(results, key=lambda r: (_ORDER.get(r.result, 3), r.kind, r.name))
    counts = Counter(r.result for r in ordered)
    ordered = ordered[:MAX_RESULTS]
    return {
        "apiVersion": report_kind.api_version,
        "kind": report_kind.kind,
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        },
        "scope": {"apiVersion": "v1", "kind": "Namespace", "name": namespace},
        "summary": {result: counts.get(result, 0) for result in RESULTS},
        "results": [r.as_result(namespace) for r in ordered],
    }


def same_report(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """What egress-guard writes is what is there (metadata the server adds aside)."""
    return all(live.get(key) == desired[key] for key in ("scope", "summary", "results")) and (
        section(live, "metadata", "labels").get(MANAGED_BY_LABEL) == MANAGED_BY
    )
