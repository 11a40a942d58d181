"""Doctor check `backends`: what each backend of the policy file needs is installed.

NetworkPolicies are built into every cluster (whether something enforces them is
`network-policy-enforcement`). Cilium's and Istio's kinds exist only with their CRDs: without
them the webhook refuses every workload of an enforcing namespace that uses the backend, naming
the CRD. Istio alone holds pods only through their sidecars, which a pod can bypass.
"""

from __future__ import annotations

from webhook.cluster.cluster_survey import ClusterSurvey
from webhook.core.backends import GeneratedKind, kinds_of, sidecars_alone
from webhook.core.policy import Policy
from webhook.doctor.results import CheckResult, Status, unknown

CHECK = "backends"


def check_backends(survey: ClusterSurvey, policy: Policy) -> CheckResult:
    backends = policy.backend_set
    named = ", ".join(b.value for b in backends)
    custom = [kind for kind in kinds_of(backends) if kind.custom]
    if not custom:
        return CheckResult(
            CHECK,
            Status.OK,
            "the policy file's backend is NetworkPolicy (networking.k8s.io/v1): built into every "
            "cluster, nothing to install",
        )
    if survey.crds is None:
        why = survey.unreadable.get("customresourcedefinitions", "not read")
        return unknown(CHECK, "the CustomResourceDefinitions", why)
    missing = [
        kind
        for kind in custom
        if kind.qualified not in survey.crds
        or kind.version not in survey.crd_versions.get(kind.qualified, {kind.version})
    ]
    details = tuple(_state(kind, survey) for kind in custom)
    if missing:
        backs = sorted({kind.backend.value for kind in missing})
        return CheckResult(
            CHECK,
            Status.PROBLEM,
            f"backends {named}: {', '.join(f'{k.qualified} {k.version}' for k in missing)} not "
            "served; enforcing namespaces using them refuse every new workload",
            details,
            f"install (or upgrade) {' and '.join(b.capitalize() for b in backs)}, or take "
            f"{', '.join(backs)} out of the policy file's backends",
        )
    if sidecars_alone(backends):
        return CheckResult(
            CHECK,
            Status.WARNING,
            "backends istio: pods are held only by their sidecars, which a pod can bypass",
            details,
            "add networkpolicy or cilium to the policy file's backends",
        )
    return CheckResult(CHECK, Status.OK, f"backends {named}: their CRDs are installed", details)


def _state(kind: GeneratedKind, survey: ClusterSurvey) -> str:
    where = f"{kind.kind} ({kind.api_version}): CRD {kind.qualified}"
    if kind.qualified not in (survey.crds or ()):
        return f"{where} NOT installed"
    served = survey.crd_versions.get(kind.qualified)
    if served is not None and kind.version not in served:
        serving = ", ".join(sorted(served)) or "nothing"
        return f"{where} installed, serving {serving}, NOT {kind.version}"
    return f"{where} installed"
