"""A profile as Cilium policies (`cilium.io/v2` CiliumNetworkPolicy): host names enforced.

A Kubernetes NetworkPolicy cannot name a host; Cilium can, with `toFQDNs`, by learning the
addresses a pod's DNS answers carry through its DNS proxy. Per namespace: a default deny that
leaves only DNS (every selected endpoint's egress is denied but what a rule allows), and one
policy per profile selecting the profile label. The DNS rule, with its `rules.dns` section that
sends lookups through Cilium's proxy, sits in every policy that has `toFQDNs`, or the names are
never learned.

Peers in other namespaces: a namespaced CiliumNetworkPolicy ignores namespace-label selectors, so
a `namespaceSelector` is rendered only when it names one namespace (`kubernetes.io/metadata.name`),
as `k8s:io.kubernetes.pod.namespace`; any other is not rendered, and said.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.network_policies import (
    DEFAULT_DENY_NAME,
    NAMESPACE_NAME_LABEL,
    generated_manifest,
    profile_policy_name,
    reaches_proxy,
)
from webhook.core.policy import Destination, Policy

API_VERSION = "cilium.io/v2"
KIND = "CiliumNetworkPolicy"
POD_NAMESPACE = "k8s:io.kubernetes.pod.namespace"


@dataclass(frozen=True, slots=True)
class Rendered:
    """Objects for one backend, and what of the profile they could not say (phrases:
    `peers in namespaces team=a, which Cilium cannot select by label`)."""

    manifests: tuple[dict[str, Any], ...]
    unrendered: tuple[str, ...] = ()


def _k8s(labels: Mapping[str, str]) -> dict[str, str]:
    return {f"k8s:{key}": value for key, value in sorted(labels.items())}


def _ports(destination: Destination) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for spec in destination.ports:
        port: dict[str, Any] = {"port": str(spec.port), "protocol": spec.protocol}
        if spec.end_port is not None:
            port["endPort"] = spec.end_port
        ports.append(port)
    return ports


def _with_ports(rule: dict[str, Any], destination: Destination) -> dict[str, Any]:
    ports = _ports(destination)
    if ports:
        rule["toPorts"] = [{"ports": ports}]
    return rule


def dns_rules(policy: Policy) -> list[dict[str, Any]]:
    """Egress to the DNS pods, through Cilium's DNS proxy (`rules.dns`), which is how names are
    learned for `toFQDNs`; plus any `dns.cidrs` (a node-local cache) in a rule of their own:
    the Cilium agent refuses a rule that combines `toEndpoints` with `toCIDRSet`."""
    dns = policy.dns
    to_ports = [
        {
            "ports": [{"port": str(port), "protocol": "ANY"} for port in dns.ports],
            "rules": {"dns": [{"matchPattern": "*"}]},
        }
    ]
    pods = {POD_NAMESPACE: dns.namespace, **_k8s(dns.pod_selector)}
    rules: list[dict[str, Any]] = [{"toEndpoints": [{"matchLabels": pods}], "toPorts": to_ports}]
    if dns.cidrs:
        rules.append({"toCIDRSet": [{"cidr": cidr} for cidr in dns.cidrs], "toPorts": to_ports})
    return rules


def control_plane_rule(policy: Policy) -> dict[str, Any]:
    """Egress to Istio's control plane: a sidecar held by a default deny still needs it."""
    plane = policy.istio.control_plane
    pods = {POD_NAMESPACE: plane.namespace, **_k8s(plane.pod_selector)}
    ports = [{"port": str(port), "protocol": "TCP"} for port in plane.ports]
    return {"toEndpoints": [{"matchLabels": pods}], "toPorts": [{"ports": ports}]}


def _manifest(
    name: str, namespace: str, spec: dict[str, Any], component: str, policy: Policy
) -> dict[str, Any]:
    return generated_manifest(
        (API_VERSION, KIND), name, namespace, spec, component=component, policy=policy
    )


def render_default_deny(namespace: str, policy: Policy, *, mesh: bool = False) -> dict[str, Any]:
    """Every endpoint of the namespace: no egress but DNS (and Istio's control plane where the
    namespace also uses the istio backend)."""
    rules = dns_rules(policy) + ([control_plane_rule(policy)] if mesh else [])
    spec = {"endpointSelector": {}, "egress": rules}
    return _manifest(DEFAULT_DENY_NAME, namespace, spec, "default-deny", policy)


def _host_rule(destination: Destination, server_names: bool) -> dict[str, Any]:
    """`toFQDNs` with the entry's ports; with `tlsServerNames`, the TLS server name on those
    ports must be the host too (Cilium's `*` matches within one label, as `matchPattern`)."""
    host = str(destination.host)
    selector = {"matchPattern": host} if host.startswith("*.") else {"matchName": host}
    rule = _with_ports({"toFQDNs": [selector]}, destination)
    if server_names:
        rule["toPorts"][0]["serverNames"] = [host]
    return rule


def _peer_rule(destination: Destination) -> tuple[dict[str, Any] | None, str]:
    labels = _k8s(destination.pod_selector or {})
    namespaces = destination.namespace_selector
    if namespaces is not None:
        named = namespaces.get(NAMESPACE_NAME_LABEL)
        if named is None or len(namespaces) != 1:
            selector = ",".join(f"{k}={v}" for k, v in sorted(namespaces.items())) or "(all)"
            # a namespaced CiliumNetworkPolicy ignores namespace-label selectors
            return None, f"peers in namespaces {selector}, which Cilium cannot select by label"
        labels[POD_NAMESPACE] = named
    return _with_ports({"toEndpoints": [{"matchLabels": labels}]}, destination), ""


def render_profile(
    namespace: str, profile_name: str, policy: Policy, *, namespace_injects_all: bool = False
) -> Rendered:
    """Endpoints with the profile label: egress to its hosts, ranges and peers (and the proxy)."""
    profile = policy.profiles[profile_name]
    rules: list[dict[str, Any]] = []
    unrendered: list[str] = []
    for destination in profile.allow:
        if destination.host is not None:
            rules.append(_host_rule(destination, profile.tls_server_names))
        elif destination.cidr is not None:
            block: dict[str, Any] = {"cidr": destination.cidr}
            if destination.except_:
                block["except"] = list(destination.except_)
            rules.append(_with_ports({"toCIDRSet": [block]}, destination))
        else:
            rule, why = _peer_rule(destination)
            if rule is None:
                unrendered.append(why)
            else:
                rules.append(rule)
    if policy.proxy is not None and reaches_proxy(
        profile, policy, namespace_injects_all=namespace_injects_all
    ):
        proxy = policy.proxy
        matched = {POD_NAMESPACE: proxy.namespace, **_k8s(proxy.pod_selector)}
        port = [{"ports": [{"port": str(proxy.port), "protocol": "TCP"}]}]
        rules.append({"toEndpoints": [{"matchLabels": matched}], "toPorts": port})
    if not rules or any("toFQDNs" in rule for rule in rules):
        # names are learned through the DNS rule; a profile that allows nothing gets only it
        # (the CRD asks for a rule, and every profile in use has its policy)
        rules[:0] = dns_rules(policy)
    selector = {"matchLabels": {f"k8s:{policy.profile_label}": profile_name}}
    spec: dict[str, Any] = {"endpointSelector": selector, "egress": rules}
    name = profile_policy_name(profile_name)
    manifest = _manifest(name, namespace, spec, "profile", policy)
    return Rendered((manifest,), tuple(unrendered))
