"""Declared versus observed: is a flow a workload was seen making one its profile declares?

Pure functions of the policy file and flow records (whatever produced them: Hubble, a CSV):
which workload a pod belongs to, which entry of its profile (or DNS, or the proxy) allows a
destination, a tally per workload that holds counts per destination and never the flows, and the
smallest profile that would allow what a workload without one was seen doing.

Rules, as `egress-guard flows` documents them:

- DNS (the policy's DNS pods or `dns.cidrs`, on `dns.ports`, UDP or TCP) is declared for every
  workload, with a profile or without: every generated default-deny policy allows it.
- The proxy (its pods by `proxy.namespace`/`proxy.podSelector`, or the host or address of
  `proxy.url`, on its port) is declared for a profile that uses the proxy: `proxy: true`, or one
  that lists host names, which are reached through it.
- `cidr`: the address lies in it and in none of its `except` ranges. `host`: one of the names
  the flow carries (Hubble's `destination_names`) equals it, case aside; `*.example.com` stands
  for every name under example.com, not example.com itself. In-cluster peers: the destination
  pod's namespace labels (Cilium gives them as `io.cilium.k8s.namespace.labels.*`; the
  namespace's name label is always known) hold `namespaceSelector` and its labels hold
  `podSelector`; an entry without `namespaceSelector` means the workload's own namespace, as in
  a NetworkPolicy.
- Ports: an entry without ports allows every port; a numeric port (and `endPort`) must match
  the flow's port and protocol; a named port cannot be resolved from a flow record and matches
  any port of its protocol.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

from webhook.core.kube_names import LABEL_VALUE_MAX, is_label_value
from webhook.core.policy import Destination, Policy, PortSpec, Profile

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
LabelPairs = tuple[tuple[str, str], ...]
"""Labels as sorted (key, value) pairs: hashable, so results can be remembered by them."""

CACHE_LIMIT = 100_000
"""Remembered match results at most: past this the memo starts over, so memory stays bounded
whatever the input (the tallies themselves grow with destinations, never with flows)."""

TargetKind = Literal["host", "ip", "peer", "proxy"]

_DEPLOYMENT_POD = re.compile(r"^(?P<name>.+)-[a-z0-9]{6,10}-[a-z0-9]{5}$")
_SUFFIXED_POD = re.compile(r"^(?P<name>.+)-[a-z0-9]{5}$")
_ORDINAL_POD = re.compile(r"^(?P<name>.+)-[0-9]+$")
_CRONJOB_JOB = re.compile(r"^(?P<name>.+)-[0-9]{8,}$")

WORKLOAD_LABELS = ("app.kubernetes.io/name", "app", "k8s-app")
"""Labels that name an application, in the order they are asked (after the controller's own)."""

NOISE_LABELS = frozenset(
    {
        "pod-template-hash",
        "controller-revision-hash",
        "pod-template-generation",
        "statefulset.kubernetes.io/pod-name",
        "apps.kubernetes.io/pod-index",
        "job-name",
        "batch.kubernetes.io/job-name",
        "controller-uid",
        "batch.kubernetes.io/controller-uid",
        "batch.kubernetes.io/job-completion-index",
    }
)
"""Labels that change from one pod (or rollout) to the next: never used to select peers."""


def sorted_labels(labels: Mapping[str, str]) -> LabelPairs:
    return tuple(sorted(labels.items()))


def workload_name(pod: str, labels: Mapping[str, str], owner: str | None = None) -> str:
    """The workload a pod belongs to, by the first rule that applies:

    1. the owner the flow source names (Hubble's `workloads`, filled by Cilium 1.14 and later);
    2. a `pod-template-hash` label H and a name `NAME-H-xxxxx`: NAME (a Deployment's pod);
    3. a `job-name` (or `batch.kubernetes.io/job-name`) label: the Job, and for a CronJob's job
       (`NAME-` and 8 or more digits) the CronJob NAME;
    4. a `controller-revision-hash` label: a StatefulSet's `NAME-ordinal` or a DaemonSet's
       `NAME-xxxxx` is NAME;
    5. the label app.kubernetes.io/name, app or k8s-app;
    6. the pod's name alone: `NAME-xxxxxxxxx-xxxxx` (a Deployment's), then `NAME-ordinal`
       (a StatefulSet's) are NAME; anything else is a Pod of its own name.
    """
    if owner:
        return owner
    template_hash = labels.get("pod-template-hash")
    if template_hash:
        prefix = pod.rpartition("-")[0]
        suffix = f"-{template_hash}"
        if prefix.endswith(suffix) and len(prefix) > len(suffix):
            return prefix[: -len(suffix)]
    job = labels.get("job-name") or labels.get("batch.kubernetes.io/job-name")
    if job:
        cron = _CRONJOB_JOB.match(job)
        return cron.group("name") if cron else job
    if labels.get("controller-revision-hash"):
        if (
            "statefulset.kubernetes.io/pod-name" in labels
            or "apps.kubernetes.io/pod-index" in labels
        ):
            ordinal = _ORDINAL_POD.match(pod)
            if ordinal:
                return ordinal.group("name")
        suffixed = _SUFFIXED_POD.match(pod)
        if suffixed:
            return suffixed.group("name")
    for key in WORKLOAD_LABELS:
        value = labels.get(key)
        if value:
            return value
    for pattern in (_DEPLOYMENT_POD, _ORDINAL_POD):
        found = pattern.match(pod)
        if found:
            return found.group("name")
    return pod


@dataclass(frozen=True, slots=True)
class Peer:
    """An in-cluster destination: a pod, as far as the flow record says."""

    namespace: str
    labels: LabelPairs = ()
    namespace_labels: LabelPairs | None = None
    """Labels of its namespace when the record has them; the name label is always assumed."""
    workload: str = ""
    _hash: int = field(default=0, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        hashed = hash((self.namespace, self.labels, self.namespace_labels, self.workload))
        object.__setattr__(self, "_hash", hashed)

    def __hash__(self) -> int:
        """Computed once: a peer is a key of the memo for every flow to it."""
        return self._hash

    def namespace_label_map(self) -> dict[str, str]:
        labels = dict(self.namespace_labels or ())
        labels.setdefault(NAMESPACE_NAME_LABEL, self.namespace)
        return labels

    def selector(self) -> LabelPairs:
        """The fewest labels that pick this peer's workload: a naming label if it has one,
        else every label that does not change from pod to pod."""
        labels = dict(self.labels)
        for key in WORKLOAD_LABELS:
            if labels.get(key):
                return ((key, labels[key]),)
        return tuple((k, v) for k, v in self.labels if k not in NOISE_LABELS)


@dataclass(slots=True)
class ObservedFlow:
    """One egress flow from a pod, as recorded."""

    namespace: str
    pod: str
    labels: Mapping[str, str]
    ip: str
    port: int | None
    protocol: str
    """TCP, UDP, SCTP, or ICMPv4/ICMPv6 (no port)."""
    names: tuple[str, ...] = ()
    """DNS names of the destination address (lower case, no trailing dot)."""
    peer: Peer | None = None
    dropped: bool = False
    """It did not leave (Hubble: DROPPED or ERROR): still what the workload tried to do."""
    workload: str = ""
    """Its workload's name, when the reader knows it already (else derived from pod and labels)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A destination as reported and suggested: a host name, an address, a peer workload or the
    proxy, with its port and protocol."""

    kind: TargetKind
    value: str
    """The host name, the address, `namespace/workload`, or the proxy's `namespace/port`."""
    port: int | None
    protocol: str
    namespace: str = ""
    selector: LabelPairs = ()
    """For a peer: the labels that select its pods."""
    namespace_selector: LabelPairs = ()

    def __str__(self) -> str:
        if self.port is None:
            return f"{self.value}/{self.protocol}"
        host = f"[{self.value}]" if self.kind == "ip" and ":" in self.value else self.value
        return f"{host}:{self.port}/{self.protocol}"

    @property
    def sort_key(self) -> tuple[str, str, int, str]:
        return (self.kind, self.value, self.port or 0, self.protocol)


@dataclass(frozen=True, slots=True)
class Match:
    """Whether a flow is declared, and by what (a rule) or why not (a reason)."""

    declared: bool
    why: str


DNS = "dns"
PROXY = "proxy"


def _port_text(spec: PortSpec) -> str:
    port = f"{spec.port}-{spec.end_port}" if spec.end_port is not None else str(spec.port)
    return port if spec.protocol == "TCP" else f"{port}/{spec.protocol}"


def _selector_text(labels: Mapping[str, str] | None) -> str:
    if labels is None:
        return ""
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"


def entry_text(destination: Destination) -> str:
    """An allow entry in a few words: `cidr 10.0.0.0/8`, `host *.example.com`, a peer."""
    if destination.cidr is not None:
        text = f"cidr {destination.cidr}"
        if destination.except_:
            text += f" except {', '.join(destination.except_)}"
    elif destination.host is not None:
        text = f"host {destination.host}"
    else:
        parts = []
        if destination.namespace_selector is not None:
            parts.append(f"namespaceSelector {_selector_text(destination.namespace_selector)}")
        if destination.pod_selector is not None:
            parts.append(f"podSelector {_selector_text(destination.pod_selector)}")
        text = " ".join(parts)
    if destination.ports:
        text += " ports " + ",".join(_port_text(p) for p in destination.ports)
    return text


def port_allowed(ports: Iterable[PortSpec], port: int | None, protocol: str) -> bool:
    """No ports: every port. Otherwise one spec of the flow's protocol covers its port."""
    specs = list(ports)
    if not specs:
        return True
    for spec in specs:
        if spec.protocol != protocol:
            continue
        if isinstance(spec.port, str):
            return True
        if port is not None and spec.port <= port <= (spec.end_port or spec.port):
            return True
    return False


def host_matches(pattern: str, name: str) -> bool:
    """`api.example.com` is that name; `*.example.com` every name under example.com."""
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


def labels_hold(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class _Entry:
    destination: Destination
    text: str
    network: Network | None
    excepted: tuple[Network, ...]


class FlowMatcher:
    """A policy file's profiles, ready to be asked about flows."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._entries: dict[str, tuple[_Entry, ...]] = {
            name: tuple(self._entry(d) for d in profile.allow)
            for name, profile in policy.profiles.items()
        }
        self._dns_networks = tuple(ipaddress.ip_network(c) for c in policy.dns.cidrs)
        self._dns_ports = frozenset(policy.dns.ports)
        proxy = policy.proxy
        self._proxy_host = ""
        self._proxy_url_port = 0
        if proxy is not None:
            parts = urlsplit(proxy.url)
            self._proxy_host = (parts.hostname or "").lower().rstrip(".")
            self._proxy_url_port = parts.port or (443 if parts.scheme == "https" else 80)

    @staticmethod
    def _entry(destination: Destination) -> _Entry:
        network = ipaddress.ip_network(destination.cidr) if destination.cidr else None
        excepted = tuple(ipaddress.ip_network(e) for e in destination.except_)
        return _Entry(destination, entry_text(destination), network, excepted)

    def profile(self, name: str | None) -> Profile | None:
        return self.policy.profiles.get(name) if name is not None else None

    def profile_label(self, labels: Mapping[str, str]) -> str | None:
        return labels.get(self.policy.profile_label)

    def is_dns(self, flow: ObservedFlow, address: Address | None) -> bool:
        if flow.port not in self._dns_ports or flow.protocol not in ("UDP", "TCP"):
            return False
        dns = self.policy.dns
        peer = flow.peer
        if (
            peer is not None
            and peer.namespace == dns.namespace
            and labels_hold(dns.pod_selector, dict(peer.labels))
        ):
            return True
        return address is not None and any(address in net for net in self._dns_networks)

    def is_proxy(self, flow: ObservedFlow) -> bool:
        proxy = self.policy.proxy
        if proxy is None or flow.protocol != "TCP":
            return False
        peer = flow.peer
        if peer is not None and peer.namespace == proxy.namespace:
            return flow.port == proxy.port and labels_hold(proxy.pod_selector, dict(peer.labels))
        if flow.port not in (proxy.port, self._proxy_url_port):
            return False
        return flow.ip == self._proxy_host or self._proxy_host in flow.names

    def match(self, flow: ObservedFlow, profile_name: str | None) -> Match:
        """Declared or not, and the rule that declares it or the reason it is not."""
        address = _address(flow.ip)
        if self.is_dns(flow, address):
            return Match(True, DNS)
        if profile_name is None:
            return Match(False, "no profile label")
        profile = self.profile(profile_name)
        if profile is None:
            return Match(False, f"profile {profile_name} is not in the policy file")
        if self.is_proxy(flow):
            if profile.uses_proxy:
                return Match(True, PROXY)
            return Match(False, f"profile {profile_name} does not use the proxy")
        near: str | None = None
        for entry in self._entries[profile_name]:
            reaches = self._reaches(entry, flow, address)
            if reaches is None:
                continue
            if reaches and port_allowed(entry.destination.ports, flow.port, flow.protocol):
                return Match(True, entry.text)
            if near is None:
                near = (
                    f"{entry.text}: not port {flow.port or '-'}/{flow.protocol}"
                    if reaches
                    else f"{entry.text}: namespace labels not in the flow record"
                )
        return Match(False, near or f"not in profile {profile_name}")

    def _reaches(self, entry: _Entry, flow: ObservedFlow, address: Address | None) -> bool | None:
        """True: the entry's destination is the flow's; None: it is not; False: it may be, but
        the record lacks the namespace labels that would tell."""
        destination = entry.destination
        if entry.network is not None:
            if address is None or address.version != entry.network.version:
                return None
            if address in entry.network and not any(address in e for e in entry.excepted):
                return True
            return None
        if destination.host is not None:
            return True if any(host_matches(destination.host, n) for n in flow.names) else None
        peer = flow.peer
        if peer is None:
            return None
        if destination.pod_selector is not None and not labels_hold(
            destination.pod_selector, dict(peer.labels)
        ):
            return None
        if destination.namespace_selector is None:
            return True if peer.namespace == flow.namespace else None
        if labels_hold(destination.namespace_selector, peer.namespace_label_map()):
            return True
        return False if peer.namespace_labels is None else None

    def target(self, flow: ObservedFlow) -> Target:
        """How a flow's destination is reported: the proxy, a peer workload, the first DNS name,
        else the address."""
        peer = flow.peer
        if self.is_proxy(flow):
            proxy = self.policy.proxy
            assert proxy is not None
            return Target("proxy", f"proxy {proxy.namespace}", flow.port, flow.protocol)
        if peer is not None:
            namespace_selector = ((NAMESPACE_NAME_LABEL, peer.namespace),)
            return Target(
                "peer",
                f"{peer.namespace}/{peer.workload or '-'}",
                flow.port,
                flow.protocol,
                namespace=peer.namespace,
                selector=peer.selector(),
                namespace_selector=namespace_selector,
            )
        if flow.names:
            return Target("host", flow.names[0], flow.port, flow.protocol)
        return Target("ip", flow.ip, flow.port, flow.protocol)


@lru_cache(maxsize=65536)
def _address(ip: str) -> Address | None:
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


@dataclass(slots=True)
class Tally:
    flows: int = 0
    dropped: int = 0
    why: str = ""


WorkloadKey = tuple[str, str, str | None]
"""(namespace, workload, profile label or None)."""


@dataclass(slots=True)
class WorkloadTally:
    """What one workload (on one profile) was seen doing: counts, never flows."""

    namespace: str
    workload: str
    profile: str | None
    profile_known: bool
    flows: int = 0
    dropped: int = 0
    declared: dict[str, Tally] = field(default_factory=dict)
    """By the rule that declares them."""
    undeclared: dict[Target, Tally] = field(default_factory=dict)

    @property
    def undeclared_flows(self) -> int:
        return sum(t.flows for t in self.undeclared.values())

    @property
    def declared_flows(self) -> int:
        return self.flows - self.undeclared_flows

    @property
    def needs_profile(self) -> bool:
        return self.profile is None or not self.profile_known


@dataclass(slots=True)
class FlowAudit:
    """Flows in, tallies out: per workload, per destination, with the rule or the reason."""

    policy: Policy
    matcher: FlowMatcher = field(init=False)
    workloads: dict[WorkloadKey, WorkloadTally] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    _memo: dict[tuple[Any, ...], tuple[Target, Match]] = field(default_factory=dict)
    _sources: dict[tuple[str, str, str, str | None], WorkloadTally] = field(default_factory=dict)
    _counters: dict[tuple[Any, ...], tuple[WorkloadTally, Tally]] = field(default_factory=dict)
    _exempt: frozenset[str] = field(init=False)
    _profile_label: str = field(init=False)

    def __post_init__(self) -> None:
        self.matcher = FlowMatcher(self.policy)
        self._exempt = self.policy.exempt
        self._profile_label = self.policy.profile_label

    def _workload(self, flow: ObservedFlow, profile: str | None) -> WorkloadTally:
        name = flow.workload or workload_name(flow.pod, flow.labels)
        key = (flow.namespace, name, profile)
        tally = self.workloads.get(key)
        if tally is None:
            known = profile is not None and profile in self.policy.profiles
            tally = self.workloads[key] = WorkloadTally(flow.namespace, name, profile, known)
        return tally

    def add(self, flow: ObservedFlow) -> None:
        """Count one flow. The hot path is one lookup: (pod, destination) -> its counters."""
        namespace = flow.namespace
        profile = flow.labels.get(self._profile_label)
        key = (
            namespace,
            flow.pod,
            flow.workload,
            profile,
            flow.ip,
            flow.port,
            flow.protocol,
            flow.names,
            flow.peer,
        )
        found = self._counters.get(key)
        if found is None:
            if namespace in self._exempt:
                self.skipped["exempt namespace"] += 1
                return
            if len(self._counters) > CACHE_LIMIT:
                self._counters.clear()
            found = self._counters[key] = self._counters_for(flow, profile)
        tally, counts = found
        tally.flows += 1
        counts.flows += 1
        if flow.dropped:
            tally.dropped += 1
            counts.dropped += 1

    def _counters_for(self, flow: ObservedFlow, profile: str | None) -> tuple[WorkloadTally, Tally]:
        source_key = (flow.namespace, flow.pod, flow.workload, profile)
        tally = self._sources.get(source_key)
        if tally is None:
            if len(self._sources) > CACHE_LIMIT:
                self._sources.clear()
            tally = self._sources[source_key] = self._workload(flow, profile)
        key = (flow.namespace, profile, flow.ip, flow.port, flow.protocol, flow.names, flow.peer)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) > CACHE_LIMIT:
                self._memo.clear()
            found = self._memo[key] = (self.matcher.target(flow), self.matcher.match(flow, profile))
        target, match = found
        counts: Tally | None
        if match.declared:
            counts = tally.declared.get(match.why)
            if counts is None:
                counts = tally.declared[match.why] = Tally(why=match.why)
        else:
            counts = tally.undeclared.get(target)
            if counts is None:
                counts = tally.undeclared[target] = Tally(why=match.why)
        return tally, counts

    def sorted_workloads(self) -> list[WorkloadTally]:
        return sorted(
            self.workloads.values(), key=lambda t: (t.namespace, t.workload, t.profile or "")
        )

    @property
    def flows(self) -> int:
        return sum(t.flows for t in self.workloads.values())

    @property
    def undeclared_destinations(self) -> int:
        return sum(len(t.undeclared) for t in self.workloads.values())


def suggested_profile_name(namespace: str, workload: str) -> str:
    """`namespace-workload` as a valid profile name (a label value of at most 63 characters)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{namespace}-{workload}")
    name = name[:LABEL_VALUE_MAX].strip("-_.")
    return name if is_label_value(name) and name else "suggested"


def _ports_document(ports: Iterable[tuple[int, str]]) -> list[Any]:
    """Ports as the policy file writes them: a bare number for TCP, else port and protocol."""
    ordered = sorted(set(ports), key=lambda p: (p[1] != "TCP", p[1], p[0]))
    return [
        port if protocol == "TCP" else {"port": port, "protocol": protocol}
        for port, protocol in ordered
    ]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """The smallest profile covering what one workload was seen doing (flows that left)."""

    name: str
    namespace: str
    workload: str
    profile: dict[str, Any]
    flows: int
    left_out: tuple[tuple[Target, Tally], ...]
    """Destinations only ever seen dropped: the workload works without them."""


@dataclass(slots=True)
class _Ports:
    seen: set[tuple[int, str]] = field(default_factory=set)
    any_port: bool = False
    """A flow without a port (ICMP): no ports can be listed, since NetworkPolicies name none."""

    def add(self, target: Target) -> None:
        if target.port is None:
            self.any_port = True
        else:
            self.seen.add((target.port, target.protocol))

    def document(self, entry: dict[str, Any]) -> dict[str, Any]:
        if self.seen and not self.any_port:
            entry["ports"] = _ports_document(self.seen)
        return entry


def suggest(tally: WorkloadTally) -> Suggestion:
    """Host names where the flows carried them, else single addresses (/32, /128), peers by
    their namespace's name and their workload's labels, `proxy: true` for the proxy; ports and
    protocols as seen. A destination whose every flow was dropped is left out."""
    hosts: dict[str, _Ports] = {}
    addresses: dict[str, _Ports] = {}
    peers: dict[tuple[LabelPairs, LabelPairs], _Ports] = {}
    proxy = False
    left_out: list[tuple[Target, Tally]] = []
    flows = 0
    for target, counts in sorted(tally.undeclared.items(), key=lambda item: item[0].sort_key):
        if counts.dropped == counts.flows:
            left_out.append((target, counts))
            continue
        flows += counts.flows
        if target.kind == "proxy":
            proxy = True
        elif target.kind == "host":
            hosts.setdefault(target.value, _Ports()).add(target)
        elif target.kind == "peer":
            key = (target.namespace_selector, target.selector)
            peers.setdefault(key, _Ports()).add(target)
        else:
            addresses.setdefault(target.value, _Ports()).add(target)
    allow: list[dict[str, Any]] = []
    for host, ports in sorted(hosts.items()):
        allow.append(ports.document({"host": host}))
    for ip, ports in sorted(addresses.items(), key=lambda item: _address_order(item[0])):
        address = _address(ip)
        bits = 128 if address is not None and address.version == 6 else 32
        allow.append(ports.document({"cidr": f"{ip}/{bits}"}))
    for (namespace_selector, selector), ports in sorted(peers.items()):
        entry: dict[str, Any] = {"namespaceSelector": dict(namespace_selector)}
        if selector:
            entry["podSelector"] = dict(selector)
        allow.append(ports.document(entry))
    profile: dict[str, Any] = {
        "description": f"{tally.namespace}/{tally.workload}, from observed flows"
    }
    if allow:
        profile["allow"] = allow
    if proxy:
        profile["proxy"] = True
    return Suggestion(
        suggested_profile_name(tally.namespace, tally.workload),
        tally.namespace,
        tally.workload,
        profile,
        flows,
        tuple(left_out),
    )


def _address_order(ip: str) -> tuple[int, int, str]:
    address = _address(ip)
    if address is None:
        return (9, 0, ip)
    return (address.version, int(address), ip)
