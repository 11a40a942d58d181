"""NetworkPolicies from the policy file: a default-deny per namespace and an allow per profile.

Pure rendering: the same policy file, namespace and profile always give the same objects, each
carrying a hash of its own content so that drift (a stale or hand-edited copy) is detectable.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.policy.model import Destination, Policy, PortSpec, Profile

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "egress-guard"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace: the one reliable way to select a namespace by name."""

DEFAULT_DENY_NAME = "egress-guard-default-deny"
PROFILE_NAME_PREFIX = "egress-guard-profile-"


@dataclass(frozen=True, slots=True)
class GeneratedKeys:
    """Label and annotation keys on generated objects, under the policy's label prefix."""

    hash_annotation: str
    component_label: str
    profile_label: str

    @staticmethod
    def of(policy: Policy) -> GeneratedKeys:
        return GeneratedKeys(
            hash_annotation=f"{policy.label_prefix}/policy-hash",
            component_label=f"{policy.label_prefix}/generated",
            profile_label=policy.profile_label,
        )


def profile_policy_name(profile: str) -> str:
    """A valid DNS-1123 name for a profile's policy; odd names keep a hash so none collide."""
    slug = re.sub(r"[^a-z0-9-]+", "-", profile.lower()).strip("-")
    if slug == profile and len(slug) <= 40:
        return PROFILE_NAME_PREFIX + slug
    digest = hashlib.sha256(profile.encode()).hexdigest()[:8]
    return f"{PROFILE_NAME_PREFIX}{slug[:40].rstrip('-')}-{digest}"


def content_hash(spec: Mapping[str, Any]) -> str:
    """A short, stable digest of a policy's spec: equal specs, equal hashes."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _ports(ports: list[PortSpec]) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    for spec in ports:
        port: dict[str, Any] = {"protocol": spec.protocol, "port": spec.port}
        if spec.end_port is not None:
            port["endPort"] = spec.end_port
        rendered.append(port)
    return rendered


def _namespace_peer(namespace: str, pod_selector: Mapping[str, str]) -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
        "podSelector": {"matchLabels": dict(pod_selector)},
    }


def _rule(destination: Destination) -> dict[str, Any] | None:
    peer: dict[str, Any]
    if destination.cidr is not None:
        block: dict[str, Any] = {"cidr": destination.cidr}
        if destination.except_:
            block["except"] = list(destination.except_)
        peer = {"ipBlock": block}
    elif destination.host is not None:
        return None
    else:
        peer = {}
        if destination.namespace_selector is not None:
            peer["namespaceSelector"] = {"matchLabels": dict(destination.namespace_selector)}
        if destination.pod_selector is not None:
            peer["podSelector"] = {"matchLabels": dict(destination.pod_selector)}
    rule: dict[str, Any] = {"to": [peer]}
    if destination.ports:
        rule["ports"] = _ports(destination.ports)
    return rule


def _manifest(
    name: str,
    namespace: str,
    spec: dict[str, Any],
    *,
    component: str,
    policy: Policy,
    extra_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    keys = GeneratedKeys.of(policy)
    labels = {MANAGED_BY_LABEL: MANAGED_BY, keys.component_label: component, **(extra_labels or {})}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {keys.hash_annotation: content_hash({"labels": labels, "spec": spec})},
        },
        "spec": spec,
    }


def render_default_deny(namespace: str, policy: Policy) -> dict[str, Any]:
    """Every pod in the namespace: no egress but DNS."""
    dns = policy.dns
    spec = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [_namespace_peer(dns.namespace, dns.pod_selector)],
                "ports": [
                    {"protocol": protocol, "port": port}
                    for port in dns.ports
                    for protocol in ("UDP", "TCP")
                ],
            }
        ],
    }
    return _manifest(DEFAULT_DENY_NAME, namespace, spec, component="default-deny", policy=policy)


def uses_proxy(profile: Profile, namespace_injects_all: bool) -> bool:
    return profile.proxy or namespace_injects_all


def render_profile(
    namespace: str, profile_name: str, policy: Policy, *, namespace_injects_all: bool = False
) -> dict[str, Any]:
    """Pods labelled with the profile: egress to the profile's destinations (and the proxy)."""
    profile = policy.profiles[profile_name]
    rules = [rule for rule in map(_rule, profile.allow) if rule is not None]
    if policy.proxy is not None and uses_proxy(profile, namespace_injects_all):
        proxy = policy.proxy
        rules.append(
            {
                "to": [_namespace_peer(proxy.namespace, proxy.pod_selector)],
                "ports": [{"protocol": "TCP", "port": proxy.port}],
            }
        )
    spec = {
        "podSelector": {"matchLabels": {policy.profile_label: profile_name}},
        "policyTypes": ["Egress"],
        "egress": rules,
    }
    return _manifest(
        profile_policy_name(profile_name),
        namespace,
        spec,
        component="profile",
        policy=policy,
        extra_labels={GeneratedKeys.of(policy).profile_label: profile_name},
    )


def unexpressible(profile_name: str, policy: Policy, *, namespace_injects_all: bool) -> list[str]:
    """Warnings for destinations no NetworkPolicy can express (host names), with what to do."""
    profile = policy.profiles[profile_name]
    if uses_proxy(profile, namespace_injects_all):
        return []
    return [
        f"egress-guard: profile {profile_name}: no NetworkPolicy can allow host {d.host}; "
        "route it via the proxy"
        for d in profile.allow
        if d.host is not None
    ]
