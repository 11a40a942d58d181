"""The doctor's checks, by id, and what each needs read: one diagnosis from one survey.

Pure: the cluster is read before (`webhook.cluster.cluster_survey`, the reconciler's plan made
without writing), and each check is a function of what was read. `--check ID` runs a subset and
reads only what that subset needs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.cluster.cluster_survey import ClusterSurvey, SurveyTargets
from webhook.core.policy import Policy
from webhook.doctor import backends, dns_and_proxy, namespaces, network_enforcement, webhooks
from webhook.doctor.results import CheckResult, Status, unknown
from webhook.reconcile.plan import ReconcilePlan


@dataclass(frozen=True, slots=True)
class DoctorCheck:
    id: str
    title: str
    reads: frozenset[str]
    """What `survey_cluster` must read for it."""


CHECKS: tuple[DoctorCheck, ...] = (
    DoctorCheck(
        network_enforcement.CHECK,
        "something enforces NetworkPolicies (the CNI and its settings)",
        frozenset({"daemonsets", "configmaps", "crds", "namespaces"}),
    ),
    DoctorCheck(
        backends.CHECK, "what each configured backend needs is installed", frozenset({"crds"})
    ),
    DoctorCheck(
        webhooks.CONFIGURATION,
        "the installed webhooks are what the policy file renders",
        frozenset({"webhooks", "version"}),
    ),
    DoctorCheck(
        webhooks.CERTIFICATE,
        "the caBundle signs the serving certificate, which is not about to expire",
        frozenset({"webhooks"}),
    ),
    DoctorCheck(
        webhooks.ENDPOINTS, "the webhook's Service has ready endpoints", frozenset({"webhooks"})
    ),
    DoctorCheck(
        dns_and_proxy.DNS,
        "the DNS selector matches running DNS pods; NodeLocal DNSCache is declared",
        frozenset({"dns", "daemonsets", "namespaces"}),
    ),
    DoctorCheck(dns_and_proxy.PROXY, "the proxy Service has ready endpoints", frozenset({"proxy"})),
    DoctorCheck(
        namespaces.NAMESPACES,
        "managed namespaces: labels, and workloads their next update would refuse",
        frozenset({"namespaces"}),
    ),
    DoctorCheck(
        namespaces.GENERATED,
        "the generated NetworkPolicies are in place (the reconciler's plan, not carried out)",
        frozenset({"namespaces"}),
    ),
)
CHECK_IDS: tuple[str, ...] = tuple(check.id for check in CHECKS)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    results: tuple[CheckResult, ...]

    @property
    def problems(self) -> int:
        return sum(result.status is Status.PROBLEM for result in self.results)

    def count(self, status: Status) -> int:
        return sum(result.status is status for result in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checks": [result.as_dict() for result in self.results],
            "summary": {status.value: self.count(status) for status in Status},
        }


@dataclass(frozen=True, slots=True)
class Observations:
    """What the checks look at besides the survey."""

    survey: ClusterSurvey
    expected_webhooks: tuple[Mapping[str, Any], Mapping[str, Any]]
    """(validating, mutating) as `egress-guard manifests` renders them from the policy file."""
    refused: list[namespaces.Refusal] | None = None
    refused_unreadable: str | None = None
    plan: ReconcilePlan | None = None
    plan_unreadable: str | None = None


def reads_for(check_ids: tuple[str, ...]) -> frozenset[str]:
    return frozenset().union(*(c.reads for c in CHECKS if c.id in check_ids))


def diagnose(
    check_ids: tuple[str, ...],
    seen: Observations,
    policy: Policy,
    targets: SurveyTargets,
    now: dt.datetime,
) -> Diagnosis:
    survey = seen.survey
    labels = survey.namespaces or {}
    relies_on_network_policies = namespaces.uses_network_policies(labels, policy)
    results: list[CheckResult] = []
    for check_id in check_ids:
        if check_id == network_enforcement.CHECK:
            results.append(network_enforcement.check(survey, relies_on_network_policies))
        elif check_id == backends.CHECK:
            results.append(backends.check_backends(survey, policy))
        elif check_id == webhooks.CONFIGURATION:
            validating, mutating = seen.expected_webhooks
            results.append(webhooks.check_configuration(survey, validating, mutating))
        elif check_id == webhooks.CERTIFICATE:
            results.append(webhooks.check_certificate(survey, targets, now))
        elif check_id == webhooks.ENDPOINTS:
            results.append(webhooks.check_endpoints(survey, targets))
        elif check_id == dns_and_proxy.DNS:
            results.append(dns_and_proxy.check_dns(survey, policy, relies_on_network_policies))
        elif check_id == dns_and_proxy.PROXY:
            results.append(dns_and_proxy.check_proxy(survey, policy))
        elif check_id == namespaces.NAMESPACES:
            if survey.namespaces is None:
                why = survey.unreadable.get("namespaces", "not read")
                results.append(unknown(check_id, "namespaces", why))
            elif seen.refused_unreadable is not None:
                results.append(unknown(check_id, "the workloads", seen.refused_unreadable))
            else:
                results.append(namespaces.check_namespaces(labels, policy, seen.refused))
        elif check_id == namespaces.GENERATED:
            if seen.plan is None:
                why = seen.plan_unreadable or "not read"
                results.append(unknown(check_id, "namespaces, workloads and policies", why))
            else:
                enforcing = namespaces.enforcing(labels, policy)
                results.append(namespaces.check_generated(seen.plan, enforcing))
    return Diagnosis(tuple(results))
