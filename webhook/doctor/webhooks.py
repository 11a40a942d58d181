"""The installed webhooks: as `egress-guard manifests` would render them, trusted, and served.

A configuration rendered from an older policy file (another label prefix, a workload kind
added since) silently leaves workloads unreviewed; a `caBundle` that does not sign the serving
certificate makes every call fail (and a fail-closed webhook then refuses every workload in
enforcing namespaces); so does a Service without ready endpoints.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography import x509

from webhook.cluster.cluster_survey import ClusterSurvey, SurveyTargets
from webhook.doctor.results import CheckResult, Status, unknown
from webhook.serving.certs import certificate_names, issued_by

CONFIGURATION, CERTIFICATE, ENDPOINTS = (
    "webhook-configuration",
    "webhook-certificate",
    "webhook-endpoints",
)
MATCH_CONDITIONS_SINCE = (1, 28)
"""matchConditions: beta and on by default since 1.28, GA in 1.30; older servers drop them."""
EXPIRY_WARNING_DAYS, EXPIRY_PROBLEM_DAYS = 30, 7

_DEFAULTS: Mapping[str, Any] = {
    "failurePolicy": "Fail",
    "matchPolicy": "Equivalent",
    "namespaceSelector": {},
    "objectSelector": {},
    "timeoutSeconds": 10,
    "matchConditions": [],
}
"""What the API server fills in when a webhook leaves a field out."""
_COMPARED = (*_DEFAULTS, "rules", "sideEffects", "admissionReviewVersions", "service")


def _normalised(hook: Mapping[str, Any], mutating: bool) -> dict[str, Any]:
    """A webhook with the API server's defaults applied, and without its caBundle."""
    shown: dict[str, Any] = {key: hook.get(key, default) for key, default in _DEFAULTS.items()}
    if mutating:
        shown["reinvocationPolicy"] = hook.get("reinvocationPolicy", "Never")
    shown["rules"] = [{"scope": "*", **rule} for rule in hook.get("rules") or ()]
    shown["sideEffects"] = hook.get("sideEffects")
    shown["admissionReviewVersions"] = hook.get("admissionReviewVersions")
    service = dict((hook.get("clientConfig") or {}).get("service") or {})
    service.setdefault("port", 443)
    shown["service"] = service
    return shown


def _differences(
    installed: Mapping[str, Any] | None, expected: Mapping[str, Any], mutating: bool
) -> list[str]:
    kind = expected["kind"]
    if installed is None:
        return [f"{kind} {expected['metadata']['name']} is not installed"]
    live = {str(h.get("name")): h for h in installed.get("webhooks") or ()}
    found: list[str] = []
    for hook in expected.get("webhooks") or ():
        name = str(hook["name"])
        if name not in live:
            found.append(f"{kind}: webhook {name} is missing")
            continue
        want, have = _normalised(hook, mutating), _normalised(live[name], mutating)
        compared = (*_COMPARED, "reinvocationPolicy")
        fields = [key for key in compared if want.get(key) != have.get(key)]
        if fields:
            found.append(f"{kind}: webhook {name} differs in {', '.join(fields)}")
    extra = sorted(set(live) - {str(h["name"]) for h in expected.get("webhooks") or ()})
    found += [f"{kind}: webhook {name} is not in what the policy file renders" for name in extra]
    return found


def _uses_match_conditions(configurations: Iterable[Mapping[str, Any]]) -> bool:
    return any(
        hook.get("matchConditions") for c in configurations for hook in c.get("webhooks") or ()
    )


def check_configuration(
    survey: ClusterSurvey, validating: Mapping[str, Any], mutating: Mapping[str, Any]
) -> CheckResult:
    """`validating` and `mutating` are what `egress-guard manifests` renders from the policy."""
    for what in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        if what in survey.unreadable:
            return unknown(CONFIGURATION, what, survey.unreadable[what])
    differences = _differences(survey.validating, validating, mutating=False)
    differences += _differences(survey.mutating, mutating, mutating=True)
    fix = (
        "Render and apply the webhooks from the running policy file: "
        "`egress-guard manifests --config POLICY | kubectl apply -f -`."
    )
    version = survey.server_version
    old = version is not None and version < MATCH_CONDITIONS_SINCE
    if version is not None and old and _uses_match_conditions((validating, mutating)):
        return CheckResult(
            CONFIGURATION,
            Status.PROBLEM,
            f"the API server is {version[0]}.{version[1]}: it drops the webhooks' "
            "matchConditions (needed since 1.28), so egress-guard sees and refuses more "
            "than it should",
            tuple(differences),
            "Upgrade the control plane to 1.28 or later (1.30: GA).",
        )
    if differences:
        return CheckResult(
            CONFIGURATION,
            Status.PROBLEM,
            "the installed webhook configurations are not what the policy file renders",
            tuple(differences),
            fix,
        )
    count = len(validating.get("webhooks") or ()) + len(mutating.get("webhooks") or ())
    return CheckResult(
        CONFIGURATION, Status.OK, f"{count} webhooks as the policy file renders them"
    )


def _ca_bundles(survey: ClusterSurvey) -> set[str]:
    return {
        str((hook.get("clientConfig") or {}).get("caBundle") or "")
        for configuration in (survey.validating, survey.mutating)
        if configuration is not None
        for hook in configuration.get("webhooks") or ()
    }


def check_certificate(
    survey: ClusterSurvey, targets: SurveyTargets, now: dt.datetime
) -> CheckResult:
    if survey.validating is None and survey.mutating is None:
        return CheckResult(
            CERTIFICATE, Status.UNKNOWN, "no egress-guard webhook configuration is installed"
        )
    secret = f"{targets.namespace}/{targets.tls_secret}"
    if survey.tls_certificate is None:
        if "tls secret" in survey.unreadable:
            return unknown(
                CERTIFICATE,
                f"the Secret {secret}",
                survey.unreadable["tls secret"],
                f"Run doctor with credentials that may get the Secret {secret}.",
            )
        return CheckResult(
            CERTIFICATE,
            Status.PROBLEM,
            f"the serving certificate's Secret {secret} does not exist: the webhook cannot start",
            fix="Create it (`egress-guard certs generate`, then `kubectl create secret tls`), "
            "or install with cert-manager (`egress-guard manifests --cert-manager`).",
        )
    bundles = _ca_bundles(survey)
    if len(bundles) != 1 or not next(iter(bundles)):
        return CheckResult(
            CERTIFICATE,
            Status.PROBLEM,
            "the webhooks do not all carry the same caBundle"
            if len(bundles) > 1
            else "the webhooks carry no caBundle: the API server cannot trust the webhook",
            fix="Re-inject the CA (`egress-guard certs inject-ca`, or cert-manager's CA injector).",
        )
    try:
        leaf = x509.load_pem_x509_certificate(survey.tls_certificate)
        authorities = x509.load_pem_x509_certificates(base64.b64decode(next(iter(bundles))))
    except (ValueError, binascii.Error) as err:
        return CheckResult(CERTIFICATE, Status.PROBLEM, f"a certificate cannot be read: {err}")
    details: list[str] = []
    signed = any(issued_by(leaf, authority) for authority in authorities)
    service = f"{targets.name}.{targets.namespace}.svc"
    names, _ = certificate_names(leaf)
    left = leaf.not_valid_after_utc - now
    days = left.total_seconds() / 86400
    details.append(f"serving certificate for {', '.join(names) or '(no DNS names)'}")
    details.append(f"expires {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC ({days:.0f} days)")
    if not signed:
        return CheckResult(
            CERTIFICATE,
            Status.PROBLEM,
            "the webhooks' caBundle does not sign the serving certificate: every call fails "
            "TLS, and enforcing namespaces refuse every workload",
            tuple(details),
            "Re-inject the CA that issued it: `egress-guard certs inject-ca`.",
        )
    if service not in names:
        return CheckResult(
            CERTIFICATE,
            Status.PROBLEM,
            f"the serving certificate does not name {service}: the API server rejects it",
            tuple(details),
            f"Issue the certificate for {service}.",
        )
    if days < EXPIRY_PROBLEM_DAYS:
        status = Status.PROBLEM
    elif days < EXPIRY_WARNING_DAYS:
        status = Status.WARNING
    else:
        return CheckResult(
            CERTIFICATE, Status.OK, f"caBundle signs the serving certificate ({days:.0f} days left)"
        )
    return CheckResult(
        CERTIFICATE,
        status,
        "the serving certificate expires in "
        f"{max(days, 0):.0f} days" + (" (expired)" if days < 0 else ""),
        tuple(details),
        "Renew it (`egress-guard certs generate`, or let cert-manager renew) and restart.",
    )


def ready_endpoints(slices: Iterable[Mapping[str, Any]]) -> int:
    """Endpoints that serve: ready unless their conditions say otherwise (as kube-proxy reads)."""
    return sum(
        1
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or ()
        if (endpoint.get("conditions") or {}).get("ready") is not False
    )


def check_endpoints(survey: ClusterSurvey, targets: SurveyTargets) -> CheckResult:
    where = f"Service {targets.namespace}/{targets.name}"
    for what in ("webhook service", "webhook endpointslices"):
        if what in survey.unreadable:
            return unknown(ENDPOINTS, what, survey.unreadable[what])
    if survey.webhook_service is None:
        return CheckResult(
            ENDPOINTS,
            Status.PROBLEM,
            f"the {where} does not exist: every call to the webhook fails",
            fix="Apply the manifests (`egress-guard manifests`).",
        )
    ready = ready_endpoints(survey.webhook_endpoint_slices or ())
    if ready == 0:
        return CheckResult(
            ENDPOINTS,
            Status.PROBLEM,
            f"the {where} has no ready endpoint: enforcing namespaces refuse every workload "
            "(the webhook fails closed)",
            fix="Find why egress-guard's pods are not ready: "
            f"`kubectl -n {targets.namespace} get pods,events`.",
        )
    if ready == 1:
        return CheckResult(
            ENDPOINTS,
            Status.WARNING,
            f"the {where} has one ready endpoint: while it restarts, enforcing namespaces "
            "refuse every workload",
            fix="Run two replicas or more (the manifests' default) on different nodes.",
        )
    return CheckResult(ENDPOINTS, Status.OK, f"the {where} has {ready} ready endpoints")
