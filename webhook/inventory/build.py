"""An inventory entry per workload, from what was read: pure (the command reads the cluster).

For each workload: its namespace's mode and inject, its profile, what the profile lets it reach
(address ranges, host names, in-cluster peers, the proxy), whether the NetworkPolicies generated
for it are in place and current, and what the validating webhook would say if the namespace
enforced (the reason it would be refused, or nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.core.backends import object_ref
from webhook.core.egress_objects import egress_intents
from webhook.core.live_workloads import refusal_if_applied
from webhook.core.namespace import NamespaceContext, namespace_context
from webhook.core.network_policies import matches_rendered
from webhook.core.ownership import controlled_by_a_reviewed_kind
from webhook.core.policy import Destination, Mode, Policy, Profile
from webhook.core.raw_object import section
from webhook.core.workloads import WorkloadKind, find_workload

NOT_MANAGED = "not managed"
EXEMPT = "exempt"


@dataclass(frozen=True, slots=True)
class Entry:
    namespace: str
    kind: str
    name: str
    mode: str
    inject: str
    profile: str
    """The declared profile, "" for none; an undefined one is shown as declared."""
    reaches: tuple[str, ...]
    policies: str
    """Generated NetworkPolicies: "in place", "missing: ...", "drifted: ...", or "-"."""
    if_enforced: str
    """Why the webhook would refuse it under enforce, or ""."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "kind": self.kind,
            "name": self.name,
            "mode": self.mode,
            "inject": self.inject,
            "profile": self.profile or None,
            "reaches": list(self.reaches),
            "networkPolicies": self.policies,
            "ifEnforced": self.if_enforced or "allowed",
        }


@dataclass(slots=True)
class Inventory:
    entries: list[Entry] = field(default_factory=list)
    namespaces: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Namespace -> (mode, inject) of every namespace shown."""

    def as_dict(self, policy: Policy) -> dict[str, Any]:
        counts = self.by_namespace()
        return {
            "namespaces": [
                {"name": name, "mode": mode, "inject": inject, "workloads": len(counts[name])}
                for name, (mode, inject) in sorted(self.namespaces.items())
            ],
            "profiles": {
                name: list(reaches(profile, policy))
                for name, profile in sorted(policy.profiles.items())
            },
            "workloads": [entry.as_dict() for entry in self.entries],
        }

    def in_order(self) -> None:
        """Entries by namespace, then kind and name, as every output shows them."""
        self.entries.sort(key=lambda e: (e.namespace, e.kind, e.name))

    def by_namespace(self) -> dict[str, list[Entry]]:
        """Entries grouped once (not a scan per namespace: 2,000 namespaces of 25 workloads)."""
        grouped: dict[str, list[Entry]] = {name: [] for name in self.namespaces}
        for entry in self.entries:
            grouped.setdefault(entry.namespace, []).append(entry)
        return grouped


def _ports(destination: Destination) -> str:
    shown = []
    for spec in destination.ports:
        port = f"{spec.port}-{spec.end_port}" if spec.end_port else str(spec.port)
        shown.append(port if spec.protocol == "TCP" else f"{port}/{spec.protocol}")
    return f":{','.join(shown)}" if shown else ""


def _selector(labels: Mapping[str, str] | None) -> str:
    if labels is None:
        return "*"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "*"


def describe(destination: Destination, policy: Policy) -> str:
    """One destination as a person reads it: `34.210.129.0/24:443`, `api.stripe.com:443`,
    `pods app=ledger in namespaces team=payments:8080`."""
    ports = _ports(destination)
    if destination.cidr is not None:
        excepted = f" except {', '.join(destination.except_)}" if destination.except_ else ""
        return f"{destination.cidr}{excepted}{ports}"
    if destination.host is not None:
        return f"{destination.host}{ports} (host: through the proxy)"
    pods = _selector(destination.pod_selector)
    namespaces = (
        "its own namespace"
        if destination.namespace_selector is None
        else f"namespaces {_selector(destination.namespace_selector)}"
    )
    return f"pods {pods} in {namespaces}{ports}"


def reaches(profile: Profile, policy: Policy) -> tuple[str, ...]:
    shown = [describe(destination, policy) for destination in profile.allow]
    if profile.uses_proxy and policy.proxy is not None:
        shown.append(f"the proxy {policy.proxy.url}")
    return tuple(shown) or ("DNS only",)


def _policies_state(
    namespace: str,
    context: NamespaceContext,
    policy: Policy,
    profile: str | None,
    live: Mapping[str, Mapping[str, Any]],
) -> str:
    if not context.inject.network_policies:
        return "-"
    missing: list[str] = []
    drifted: list[str] = []
    for intent in egress_intents(namespace, context, policy, profile):
        for manifest in intent.manifests:
            name = object_ref(manifest)
            current = live.get(name)
            if current is None:
                missing.append(name)
            elif not matches_rendered(current, manifest):
                drifted.append(name)
    if missing or drifted:
        parts = [f"missing: {', '.join(missing)}"] if missing else []
        parts += [f"drifted: {', '.join(drifted)}"] if drifted else []
        return "; ".join(parts)
    return "in place"


def add_workloads(
    inventory: Inventory,
    workloads: Iterable[tuple[WorkloadKind, Mapping[str, Any]]],
    labels: Mapping[str, Mapping[str, str]],
    live_policies: Mapping[str, Mapping[str, Mapping[str, Any]]],
    policy: Policy,
) -> None:
    """Add an entry per top-level workload (what a controller owns is its owner's)."""
    for kind, obj in workloads:
        if controlled_by_a_reviewed_kind(obj, policy):
            continue
        metadata = section(obj, "metadata")
        namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
        namespace_labels = labels.get(namespace) or {}
        context = namespace_context(namespace, namespace_labels, policy)
        workload = find_workload(obj, kind.kind, name, kind.group)
        if workload is None:
            continue
        declared = workload.pod_labels.get(policy.profile_label)
        declared = declared if isinstance(declared, str) else ""
        profile = policy.profiles.get(declared)
        mode = context.mode.value if context.mode is not None else NOT_MANAGED
        if context.exempt:
            mode = EXEMPT
        inventory.namespaces.setdefault(namespace, (mode, context.inject.value))
        inventory.entries.append(
            Entry(
                namespace=namespace,
                kind=kind.kind,
                name=name,
                mode=mode,
                inject=context.inject.value,
                profile=declared,
                reaches=reaches(profile, policy) if profile is not None else (),
                policies=_policies_state(
                    namespace,
                    context,
                    policy,
                    declared if profile is not None else None,
                    live_policies.get(namespace) or {},
                )
                if context.mode is not None
                else "-",
                if_enforced=refusal_if_applied(
                    kind, obj, {**namespace_labels, policy.mode_label: Mode.ENFORCE.value}, policy
                ),
            )
        )
