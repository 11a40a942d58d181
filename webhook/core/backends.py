"""Which systems enforce a profile (`backends`), and the kinds of object each is made of.

A Kubernetes NetworkPolicy holds addresses, ports and peers, never a host name. Cilium
(`CiliumNetworkPolicy` with `toFQDNs`) and Istio (a `ServiceEntry` per profile and a
`REGISTRY_ONLY` `Sidecar`) can hold a workload to names too. The policy file's `backends` says
which of them egress-guard renders into; a namespace may narrow that list with its `backends`
label, never widen it (a namespace owner cannot ask for objects the webhook was not granted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

BACKENDS_SEPARATOR = "_"
"""Between backend names in the namespace label (a label value has no commas):
`networkpolicy_istio`."""


class Backend(StrEnum):
    NETWORKPOLICY = "networkpolicy"
    CILIUM = "cilium"
    ISTIO = "istio"

    @property
    def network_level(self) -> bool:
        """Enforced below the pod (by the CNI), so a pod cannot step around it."""
        return self is not Backend.ISTIO


def sidecars_alone(backends: tuple[Backend, ...]) -> bool:
    """Nothing but Istio's sidecars holds the pods: no network-level backend, which a pod that
    bypasses its sidecar would still meet."""
    return bool(backends) and not any(backend.network_level for backend in backends)


@dataclass(frozen=True, slots=True)
class GeneratedKind:
    """A kind of object egress-guard generates, as the API serves it."""

    group: str
    version: str
    kind: str
    plural: str
    short: str
    """What `check`'s table calls it (kubectl's short name where there is one)."""
    backend: Backend

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def qualified(self) -> str:
        """`plural.group`: the resource, and the name of its CRD where it has one."""
        return f"{self.plural}.{self.group}"

    @property
    def custom(self) -> bool:
        """Served only once a CustomResourceDefinition is installed."""
        return self.backend is not Backend.NETWORKPOLICY


NETWORK_POLICY = GeneratedKind(
    "networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "netpol", Backend.NETWORKPOLICY
)
CILIUM_NETWORK_POLICY = GeneratedKind(
    "cilium.io", "v2", "CiliumNetworkPolicy", "ciliumnetworkpolicies", "cnp", Backend.CILIUM
)
SERVICE_ENTRY = GeneratedKind(
    "networking.istio.io", "v1", "ServiceEntry", "serviceentries", "se", Backend.ISTIO
)
SIDECAR = GeneratedKind(
    "networking.istio.io", "v1", "Sidecar", "sidecars", "sidecar", Backend.ISTIO
)

GENERATED_KINDS: tuple[GeneratedKind, ...] = (
    NETWORK_POLICY,
    CILIUM_NETWORK_POLICY,
    SERVICE_ENTRY,
    SIDECAR,
)
_BY_TYPE = {(k.api_version, k.kind): k for k in GENERATED_KINDS}


def kinds_of(backends: tuple[Backend, ...]) -> tuple[GeneratedKind, ...]:
    """The kinds the backends are made of, in a fixed order."""
    return tuple(kind for kind in GENERATED_KINDS if kind.backend in backends)


def by_group(kinds: tuple[GeneratedKind, ...]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(group, version, plurals) for rules that name resources (RBAC, webhook rules), in the
    kinds' order."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for kind in kinds:
        grouped.setdefault((kind.group, kind.version), []).append(kind.plural)
    return [(group, version, tuple(plurals)) for (group, version), plurals in grouped.items()]


def generated_kind(manifest: Mapping[str, Any]) -> GeneratedKind:
    """The kind of a generated object: a rendering, or a live object given its kind when read.
    One without a kind is a NetworkPolicy, as `object_ref` reads it."""
    if "kind" not in manifest:
        return NETWORK_POLICY
    return _BY_TYPE[(str(manifest["apiVersion"]), str(manifest["kind"]))]


def parse_backends(value: str) -> tuple[Backend, ...] | None:
    """A `backends` label value as backends (in their canonical order), or None if any name in
    it is not a backend, or a name repeats."""
    names = value.split(BACKENDS_SEPARATOR)
    if len(set(names)) != len(names):
        return None
    try:
        chosen = {Backend(name) for name in names}
    except ValueError:
        return None
    return tuple(backend for backend in Backend if backend in chosen)


def backends_label_value(backends: tuple[Backend, ...]) -> str:
    return BACKENDS_SEPARATOR.join(b.value for b in backends)


def object_ref(manifest: Mapping[str, Any]) -> str:
    """How a generated object is named in messages and keyed in a namespace: a NetworkPolicy by
    its name (as ever), any other kind as `Kind/name`, since the same name is used by each kind
    (`egress-guard-default-deny` is a NetworkPolicy and a CiliumNetworkPolicy)."""
    return ref_of(
        str(manifest.get("kind") or NETWORK_POLICY.kind), str(manifest["metadata"]["name"])
    )


def ref_of(kind: str, name: str) -> str:
    """`object_ref` from a kind and a name."""
    return name if kind == NETWORK_POLICY.kind else f"{kind}/{name}"
