"""A profile as Istio objects (`networking.istio.io/v1`): host names enforced by the sidecar.

Per namespace and profile: a `ServiceEntry` listing the profile's hosts and ports (location
MESH_EXTERNAL, exportTo the namespace only), and a `Sidecar` selecting the profile's pods with
`outboundTrafficPolicy: REGISTRY_ONLY` whose egress hosts name those entries, the namespace's
own Services (`./*.<namespace>.svc.<domain>`: not `./*`, which would also take in every other
profile's entries in the namespace) and the mesh's (`istio-system/*`). A profile without hosts
gets a Sidecar that allows only the namespace's own Services and the mesh.

Wildcard hosts (`*.example.com`) need resolution NONE (Istio cannot resolve a wildcard), so
they get an entry of their own; address ranges become an entry with `addresses` and resolution
NONE. In-cluster peers in another namespace named by `kubernetes.io/metadata.name` become that
namespace's Services; peers chosen by other namespace labels cannot be said in a Sidecar, and
are said.
Istio itself says a sidecar alone cannot enforce egress (a pod that bypasses its sidecar is not
held): pair it with a network-level backend.
"""

from __future__ import annotations

import re
from typing import Any

from webhook.core.cilium_policies import Rendered
from webhook.core.network_policies import (
    NAMESPACE_NAME_LABEL,
    generated_manifest,
    profile_policy_name,
    reaches_proxy,
)
from webhook.core.policy import Destination, Policy

API_VERSION = "networking.istio.io/v1"
MESH_HOSTS = ("istio-system/*",)
"""The mesh's control plane."""


def _services(namespace: str, policy: Policy, *, own: bool = False) -> str:
    """A Sidecar host naming a namespace's Kubernetes Services (and nothing else it holds)."""
    return f"{'.' if own else namespace}/*.{namespace}.svc.{policy.dns.cluster_domain}"


def _port_entries(destination: Destination) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for spec in destination.ports or ():
        if not isinstance(spec.port, int):
            continue
        protocol = "TLS" if spec.port == 443 else "TCP"
        ports.append(
            {"number": spec.port, "name": f"{protocol.lower()}-{spec.port}", "protocol": protocol}
        )
    return ports or [{"number": 443, "name": "tls-443", "protocol": "TLS"}]


def _manifest(
    kind: str, name: str, namespace: str, spec: dict[str, Any], policy: Policy
) -> dict[str, Any]:
    return generated_manifest(
        (API_VERSION, kind), name, namespace, spec, component="profile", policy=policy
    )


def _cidr_host(cidr: str) -> str:
    """A host name for an address range's entry (Istio wants one; it is never looked up)."""
    return "cidr-" + re.sub(r"[^0-9a-f]+", "-", cidr.lower()).strip("-") + ".egress-guard.internal"


def render_profile(
    namespace: str, profile_name: str, policy: Policy, *, namespace_injects_all: bool = False
) -> Rendered:
    """A profile's entries and its Sidecar (which also lets it reach the proxy's namespace when
    the profile reaches the proxy)."""
    profile = policy.profiles[profile_name]
    base = profile_policy_name(profile_name)
    entries: list[dict[str, Any]] = []
    unrendered: list[str] = []
    exact = [d for d in profile.allow if d.host is not None and not d.host.startswith("*.")]
    wildcard = [d for d in profile.allow if d.host is not None and d.host.startswith("*.")]
    ranges = [d for d in profile.allow if d.cidr is not None]
    groups = (
        ("", exact, "DNS"),
        ("-wildcard", wildcard, "NONE"),
    )
    for suffix, destinations, resolution in groups:
        if not destinations:
            continue
        ports = {p["number"]: p for d in destinations for p in _port_entries(d)}
        spec = {
            "hosts": sorted({str(d.host) for d in destinations}),
            "ports": [ports[number] for number in sorted(ports)],
            "location": "MESH_EXTERNAL",
            "resolution": resolution,
            "exportTo": ["."],
        }
        entries.append(_manifest("ServiceEntry", base + suffix, namespace, spec, policy))
    for destination in ranges:
        cidr = str(destination.cidr)
        if destination.except_:  # allowing the whole range would allow more than declared
            excepted = ", ".join(destination.except_)
            unrendered.append(f"{cidr} except {excepted}, which a ServiceEntry cannot say")
            continue
        spec = {
            "hosts": [_cidr_host(cidr)],
            "addresses": [cidr],
            "ports": _port_entries(destination),
            "location": "MESH_EXTERNAL",
            "resolution": "NONE",
            "exportTo": ["."],
        }
        name = f"{base}-{_cidr_host(cidr).split('.', 1)[0]}"[:253]
        entries.append(_manifest("ServiceEntry", name, namespace, spec, policy))
    peers: list[str] = []
    for destination in profile.allow:
        selector = destination.namespace_selector
        if selector is None:
            continue
        named = selector.get(NAMESPACE_NAME_LABEL)
        if named is not None and len(selector) == 1:
            peers.append(_services(named, policy))
        else:
            # a Sidecar names namespaces, not labels (its own namespace's Services are allowed)
            unrendered.append("peers chosen by namespace labels, which a Sidecar cannot say")
    hosts = [
        _services(namespace, policy, own=True),
        *MESH_HOSTS,
        *(f"./{h}" for entry in entries for h in entry["spec"]["hosts"]),
        *peers,
    ]
    if policy.proxy is not None and reaches_proxy(
        profile, policy, namespace_injects_all=namespace_injects_all
    ):
        hosts.append(_services(policy.proxy.namespace, policy))
    sidecar_spec = {
        "workloadSelector": {"labels": {policy.profile_label: profile_name}},
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        "egress": [{"hosts": list(dict.fromkeys(hosts))}],
    }
    sidecar = _manifest("Sidecar", base, namespace, sidecar_spec, policy)
    return Rendered((*entries, sidecar), tuple(unrendered))
