"""Kubernetes' own naming rules (apimachinery/pkg/util/validation), and the names egress-guard
derives from them: one place, so the policy file, the CLI flags, generated object names and the
deployment all accept and produce exactly what the API server does."""

from __future__ import annotations

import re

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
"""The control plane's namespaces: never managed by egress-guard, never sent to its webhooks."""

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def is_dns1123_label(value: str) -> bool:
    """A namespace name, a Service name: lower-case letters, digits and '-', at most 63."""
    return len(value) <= DNS1123_LABEL_MAX and bool(_DNS1123_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    """An object name, a label key's prefix: DNS labels joined by '.', at most 253."""
    return len(value) <= DNS1123_SUBDOMAIN_MAX and bool(_DNS1123_SUBDOMAIN.match(value))


def is_label_value(value: str) -> bool:
    """Empty, or at most 63 letters, digits, '-', '_', '.', starting and ending alphanumeric."""
    return len(value) <= LABEL_VALUE_MAX and bool(_LABEL_VALUE.match(value))


def is_qualified_name(value: str) -> bool:
    """A label key's name part: as a label value, but not empty."""
    return len(value) <= LABEL_VALUE_MAX and bool(_QUALIFIED_NAME.match(value))


def service_dns_names(service: str, namespace: str) -> list[str]:
    """Every name a Service is reached by from inside the cluster, shortest first: what a
    serving certificate for it must name."""
    base = f"{service}.{namespace}"
    return [service, base, f"{base}.svc", f"{base}.svc.cluster.local"]


def reconciler_account_name(name: str) -> str:
    """The reconciler's ServiceAccount beside egress-guard's own (`name`)."""
    return f"{name}-reconciler"


def service_account_user(namespace: str, name: str) -> str:
    """The user name the API server gives a ServiceAccount's requests (and a review's userInfo)."""
    return f"system:serviceaccount:{namespace}:{name}"


def own_users(namespace: str, name: str) -> frozenset[str]:
    """egress-guard's service accounts, the webhook's and the reconciler's, as users: the only
    ones that create and repair the NetworkPolicies it generates."""
    return frozenset(
        service_account_user(namespace, account)
        for account in (name, reconciler_account_name(name))
    )
