"""Does a NetworkPolicy's egress stay within what egress-guard already allows?

NetworkPolicies are additive: a pod may send whatever any policy selecting it allows. A policy
egress-guard did not generate therefore widens the egress of every pod it selects, unless each of
its egress rules is already allowed to those pods by their profile's policy (or by the
default-deny's DNS rule). This module answers that question conservatively, as pure data: a rule
counts as covered only when egress-guard can show it is, so anything it cannot reason about (a
named port against a number, a selector expression it does not know) counts as widening.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core.network_policies import NAMESPACE_NAME_LABEL, render_default_deny, render_profile
from webhook.core.policy import Policy

Requirement = tuple[str, str, tuple[str, ...]]
"""One term of a label selector: (key, operator, sorted values)."""


def _requirements(selector: Any) -> frozenset[Requirement] | None:
    """A label selector as the set of its terms (matchLabels as `In` of one value), or None when
    it is malformed. The empty set selects everything."""
    if selector is None:
        return frozenset()
    if type(selector) is not dict:
        return None
    terms: set[Requirement] = set()
    labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if type(labels) is not dict or type(expressions) is not list:
        return None
    terms.update((str(k), "In", (str(v),)) for k, v in labels.items())
    for expression in expressions:
        if type(expression) is not dict:
            return None
        values = expression.get("values") or []
        if not isinstance(values, list):
            return None
        terms.add(
            (
                str(expression.get("key")),
                str(expression.get("operator")),
                tuple(sorted(str(v) for v in values)),
            )
        )
    return frozenset(terms)


@dataclass(frozen=True, slots=True)
class Peer:
    """An egress destination: an address block, or pods picked by namespace and pod selector
    (a namespace selector is always present: a bare podSelector means the policy's namespace).
    The selectors of a block are empty and never read."""

    block: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    excepts: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    namespaces: frozenset[Requirement] = frozenset()
    pods: frozenset[Requirement] = frozenset()

    def within(self, other: Peer) -> bool:
        """Everything this peer reaches, `other` reaches too."""
        if self.block is not None:
            if other.block is None or self.block.version != other.block.version:
                return False
            if not self.block.subnet_of(other.block):  # type: ignore[arg-type]
                return False
            # What `other` carves out must be carved out here too, or lie outside this block.
            return all(
                not cut.overlaps(self.block) or any(cut.subnet_of(mine) for mine in self.excepts)  # type: ignore[arg-type]
                for cut in other.excepts
            )
        if other.block is not None:
            return False
        # A selector with every term of another selects a subset of what that one selects.
        return other.namespaces <= self.namespaces and other.pods <= self.pods


ANYWHERE = None
"""A rule without `to`: every destination."""


def _peer(raw: Any, namespace: str) -> Peer | None:
    """A rule's peer, read as the API server does; None when it cannot be read."""
    if type(raw) is not dict:
        return None
    block = raw.get("ipBlock")
    if block is not None:
        if type(block) is not dict:
            return None
        try:
            network = ipaddress.ip_network(str(block.get("cidr")), strict=False)
            excepts = tuple(
                ipaddress.ip_network(str(e), strict=False) for e in block.get("except") or []
            )
        except (ValueError, TypeError):
            return None
        return Peer(block=network, excepts=excepts)
    own_namespace = frozenset({(NAMESPACE_NAME_LABEL, "In", (namespace,))})
    namespaces = (
        _requirements(raw["namespaceSelector"]) if "namespaceSelector" in raw else own_namespace
    )
    pods = _requirements(raw.get("podSelector"))
    if namespaces is None or pods is None:
        return None
    return Peer(namespaces=namespaces, pods=pods)


@dataclass(frozen=True, slots=True)
class PortRange:
    protocol: str
    first: int | str | None
    """None: every port of the protocol; a string: a named port."""
    last: int | str | None

    def within(self, other: PortRange) -> bool:
        if self.protocol != other.protocol:
            return False
        if other.first is None:
            return True
        if self.first is None:
            return False
        if isinstance(self.first, str) or isinstance(other.first, str):
            return self.first == other.first
        assert isinstance(self.last, int) and isinstance(other.last, int)
        return other.first <= self.first and self.last <= other.last


def _port(raw: Any) -> PortRange | None:
    if type(raw) is not dict:
        return None
    protocol = str(raw.get("protocol") or "TCP")
    port = raw.get("port")
    if port is None:
        return PortRange(protocol, None, None)
    if isinstance(port, bool) or not isinstance(port, int | str):
        return None
    end = raw.get("endPort")
    if isinstance(port, int) and isinstance(end, int) and not isinstance(end, bool):
        return PortRange(protocol, port, end)
    return PortRange(protocol, port, port)


@dataclass(frozen=True, slots=True)
class Rule:
    """An egress rule: peers (None: anywhere) and ports (None: every port)."""

    peers: tuple[Peer, ...] | None
    ports: tuple[PortRange, ...] | None


def read_rule(raw: Any, namespace: str) -> Rule | None:
    """An egress rule as the API server stores it; None when egress-guard cannot read it (and so
    cannot show it is covered)."""
    if type(raw) is not dict:
        return None
    to, ports = raw.get("to"), raw.get("ports")
    peers: tuple[Peer, ...] | None = None
    if to:
        if not isinstance(to, list):
            return None
        read = [_peer(item, namespace) for item in to]
        if any(p is None for p in read):
            return None
        peers = tuple(p for p in read if p is not None)
    port_ranges: tuple[PortRange, ...] | None = None
    if ports:
        if not isinstance(ports, list):
            return None
        read_ports = [_port(item) for item in ports]
        if any(p is None for p in read_ports):
            return None
        port_ranges = tuple(p for p in read_ports if p is not None)
    return Rule(peers, port_ranges)


def _covered(rule: Rule, allowed: Sequence[Rule]) -> bool:
    """Every (peer, port) the rule opens is opened by some allowed rule."""
    peers: Sequence[Peer | None] = rule.peers if rule.peers is not None else (ANYWHERE,)
    ports: Sequence[PortRange | None] = rule.ports if rule.ports is not None else (None,)
    for peer in peers:
        for port in ports:
            if not any(_allows(a, peer, port) for a in allowed):
                return False
    return True


def _allows(allowed: Rule, peer: Peer | None, port: PortRange | None) -> bool:
    if allowed.peers is not None and (
        peer is None or not any(peer.within(a) for a in allowed.peers)
    ):
        return False
    if allowed.ports is None:
        return True
    return port is not None and any(port.within(a) for a in allowed.ports)


def _rules_of(manifest: Mapping[str, Any], namespace: str) -> list[Rule]:
    """The egress rules of a NetworkPolicy egress-guard rendered (which always has a spec)."""
    egress = manifest["spec"].get("egress", [])
    return [r for r in (read_rule(raw, namespace) for raw in egress) if r is not None]


def allowed_rules(
    namespace: str, profile: str | None, policy: Policy, *, namespace_injects_all: bool
) -> tuple[Rule, ...]:
    """What egress-guard's own policies let pods of `profile` reach (None, or a profile the
    policy does not define: DNS alone)."""
    key = (allowed_rules, namespace, profile, namespace_injects_all)
    cached = policy.memo.get(key)
    if cached is None:
        rules = _rules_of(render_default_deny(namespace, policy), namespace)
        if profile is not None and profile in policy.profiles:
            rendered = render_profile(
                namespace, profile, policy, namespace_injects_all=namespace_injects_all
            )
            rules += _rules_of(rendered, namespace)
        cached = tuple(rules)
        policy.memo[key] = cached
    return cached  # type: ignore[return-value]


def selected_profiles(pod_selector: Any, policy: Policy) -> tuple[str | None, ...]:
    """The profiles a policy's podSelector can select pods of: the ones it pins with the profile
    label (matchLabels, or `In`), else every profile and pods with none (None)."""
    terms = _requirements(pod_selector)
    everyone: tuple[str | None, ...] = (*policy.profile_names, None)
    if terms is None:
        return everyone
    pinned: set[str] | None = None
    for key, operator, values in terms:
        if key == policy.profile_label and operator == "In":
            pinned = set(values) if pinned is None else pinned & set(values)
    if pinned is None:
        return everyone
    return tuple(sorted(pinned))


def uncovered(
    spec: Mapping[str, Any], namespace: str, policy: Policy, *, namespace_injects_all: bool
) -> list[tuple[int, tuple[str | None, ...]]]:
    """The egress rules (by index) that open more than the selected pods' profiles allow, each
    with the profiles it widens (None: pods without a profile). Empty for a policy that does not
    govern egress or only restricts it."""
    types = spec.get("policyTypes")
    egress = spec.get("egress")
    governs_egress = "Egress" in types if isinstance(types, list) else bool(egress)
    if not governs_egress or not egress:
        return []
    if not isinstance(egress, list):
        return [(0, selected_profiles(spec.get("podSelector"), policy))]
    profiles = selected_profiles(spec.get("podSelector"), policy)
    found: list[tuple[int, tuple[str | None, ...]]] = []
    for index, raw in enumerate(egress):
        rule = read_rule(raw, namespace)
        widened = tuple(
            profile
            for profile in profiles
            if rule is None
            or not _covered(
                rule,
                allowed_rules(
                    namespace, profile, policy, namespace_injects_all=namespace_injects_all
                ),
            )
        )
        if widened:
            found.append((index, widened))
    return found
