"""A profile as Istio objects (`networking.istio.io/v1`): host names enforced by the sidecar.

Per namespace and profile: a `ServiceEntry` per host and per address range (location
MESH_EXTERNAL, exportTo the namespace only), and a `Sidecar` selecting the profile's pods with
`outboundTrafficPolicy: REGISTRY_ONLY` whose egress hosts name those entries, the namespace's
own Services (`./*.<namespace>.svc.<domain>`: not `./*`, which would also take in every other
profile's entries in the namespace) and the mesh's (`istio-system/*`). A profile without hosts
gets a Sidecar that allows only the namespace's own Services and the mesh.

One entry per host, with that host's own ports, so that no host is reachable on another's port.
How a sidecar tells hosts apart decides what can be said without allowing more than declared:

- on port 443 an entry is `TLS`, matched by the server name the client sends;
- an exact host on another port is `TCP` with `resolution: DNS`: the sidecar sends whatever
  goes to that port to the host's own addresses, so nothing else is reached (two hosts on the
  same port cannot both be reached: Istio keeps one listener per port, and that is said);
- a wildcard host (`*.example.com`) needs `resolution: NONE`, which trusts the destination the
  client chose: on 443 the server name must still match, on any other port it would allow every
  address, so there it is left out and said;
- an address range is `TCP` with `addresses` and `resolution: NONE` (matched by address: a
  server name would never be the entry's invented host); with `except` it is left out (a
  ServiceEntry has no except).

Ports that are names or ranges cannot be said in a ServiceEntry and are left out and said; a host
without ports gets 443 alone, and that too is said. In-cluster peers in another namespace named by
`kubernetes.io/metadata.name` become that namespace's Services; peers chosen by other namespace
labels cannot be said in a Sidecar, and are said. Istio itself says a sidecar alone cannot enforce
egress (a pod that bypasses its sidecar is not held): pair it with a network-level backend.
"""

from __future__ import annotations

import hashlib
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
TLS_PORTS = frozenset({443})
"""Ports whose traffic is TLS, told apart by server name."""


def _services(namespace: str, policy: Policy, *, own: bool = False) -> str:
    """A Sidecar host naming a namespace's Kubernetes Services (and nothing else it holds)."""
    return f"{'.' if own else namespace}/*.{namespace}.svc.{policy.dns.cluster_domain}"


def entry_name(base: str, what: str, ports: list[int]) -> str:
    """`<profile policy name>.<slug>-<digest>`: the profile's name has no dot, so no entry of one
    profile can be named as one of another's, and the digest of the exact host or range and its
    ports tells apart two that slug alike (`1::2/128`, `1:2::/128`) and one listed twice with
    other ports. Each part is a DNS label; the whole a DNS subdomain."""
    slug = re.sub(r"[^a-z0-9]+", "-", what.lower().replace("*.", "wildcard-")).strip("-")
    digest = hashlib.sha256(f"{what} {ports}".encode()).hexdigest()[:8]
    return f"{base}.{slug[:54].rstrip('-')}-{digest}"


def _manifest(
    kind: str, name: str, namespace: str, spec: dict[str, Any], policy: Policy
) -> dict[str, Any]:
    return generated_manifest(
        (API_VERSION, kind), name, namespace, spec, component="profile", policy=policy
    )


def _cidr_host(cidr: str) -> str:
    """A host name for an address range's entry (Istio wants one; it is never looked up)."""
    return "cidr-" + re.sub(r"[^0-9a-f]+", "-", cidr.lower()).strip("-") + ".egress-guard.internal"


def _numbered_ports(destination: Destination, what: str) -> tuple[list[int], list[str]]:
    """The destination's single numbered ports, and what of its ports cannot be said."""
    numbers: list[int] = []
    left: list[str] = []
    for spec in destination.ports:
        if spec.protocol != "TCP":
            left.append(
                f"{spec.protocol} port {spec.port} of {what}, which a sidecar does not carry"
            )
        elif isinstance(spec.port, int) and spec.end_port is None:
            numbers.append(spec.port)
        else:
            shown = f"{spec.port}-{spec.end_port}" if spec.end_port else str(spec.port)
            left.append(f"port {shown} of {what}, which a ServiceEntry cannot say")
    return numbers, left


def _port(number: int, protocol: str) -> dict[str, Any]:
    return {"number": number, "name": f"{protocol.lower()}-{number}", "protocol": protocol}


def _host_entry(
    base: str, namespace: str, destination: Destination, policy: Policy
) -> tuple[dict[str, Any] | None, list[str]]:
    host = str(destination.host)
    wildcard = host.startswith("*.")
    numbers, left = _numbered_ports(destination, host)
    if not destination.ports:
        numbers = sorted(TLS_PORTS)
        left.append(f"{host} on any port, of which Istio holds 443 (TLS) alone")
    ports: list[dict[str, Any]] = []
    for number in sorted(set(numbers)):
        if number in TLS_PORTS:
            ports.append(_port(number, "TLS"))
        elif wildcard:
            left.append(f"{host} on port {number}, which Istio cannot tell from any address")
        else:
            ports.append(_port(number, "TCP"))
    if not ports:
        return None, left
    spec = {
        "hosts": [host],
        "ports": ports,
        "location": "MESH_EXTERNAL",
        "resolution": "NONE" if wildcard else "DNS",
        "exportTo": ["."],
    }
    name = entry_name(base, host, [p["number"] for p in ports])
    return _manifest("ServiceEntry", name, namespace, spec, policy), left


def _range_entry(
    base: str, namespace: str, destination: Destination, policy: Policy
) -> tuple[dict[str, Any] | None, list[str]]:
    cidr = str(destination.cidr)
    if destination.except_:  # allowing the whole range would allow more than declared
        return None, [
            f"{cidr} except {', '.join(destination.except_)}, which a ServiceEntry cannot say"
        ]
    numbers, left = _numbered_ports(destination, cidr)
    if not destination.ports:
        numbers = sorted(TLS_PORTS)
        left.append(f"{cidr} on any port, of which Istio holds 443 alone")
    if not numbers:
        return None, left
    spec = {
        "hosts": [_cidr_host(cidr)],
        "addresses": [cidr],
        "ports": [_port(number, "TCP") for number in sorted(set(numbers))],
        "location": "MESH_EXTERNAL",
        "resolution": "NONE",
        "exportTo": ["."],
    }
    name = entry_name(base, cidr, sorted(set(numbers)))
    return _manifest("ServiceEntry", name, namespace, spec, policy), left


def _shared_tcp_ports(entries: list[dict[str, Any]]) -> list[str]:
    """Exact hosts sharing a port other than 443: Istio keeps one listener per such port, so the
    sidecar sends all of that port's traffic to one of them (none is reached that was not
    declared, but the others are not reached at all)."""
    by_port: dict[int, list[str]] = {}
    for entry in entries:
        spec = entry["spec"]
        if spec["resolution"] != "DNS":
            continue
        for port in spec["ports"]:
            if port["protocol"] == "TCP":
                by_port.setdefault(port["number"], []).extend(spec["hosts"])
    return [
        f"{', '.join(hosts)} on port {number}, of which Istio's sidecar reaches only one"
        for number, hosts in sorted(by_port.items())
        if len(hosts) > 1
    ]


def render_profile(
    namespace: str, profile_name: str, policy: Policy, *, namespace_injects_all: bool = False
) -> Rendered:
    """A profile's entries and its Sidecar (which also lets it reach the proxy's namespace when
    the profile reaches the proxy)."""
    profile = policy.profiles[profile_name]
    base = profile_policy_name(profile_name)
    entries: list[dict[str, Any]] = []
    unrendered: list[str] = []
    for destination in profile.allow:
        if destination.host is not None:
            entry, left = _host_entry(base, namespace, destination, policy)
        elif destination.cidr is not None:
            entry, left = _range_entry(base, namespace, destination, policy)
        else:
            continue
        if entry is not None:
            entries.append(entry)
        unrendered += left
    unrendered += _shared_tcp_ports(entries)
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
