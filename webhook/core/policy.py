"""The policy file as typed, validated data.

Every rule about what a valid policy file is lives here, so that a bad file fails at start-up with
an error naming the field, never later on the admission path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from webhook.core.backends import Backend
from webhook.core.kube_names import (
    SYSTEM_NAMESPACES,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_qualified_name,
)
from webhook.core.workloads import BUILTIN_KINDS, WorkloadKind, builtin_kind

_API_VERSION = re.compile(r"^v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$")
_KIND = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_HOSTNAME = re.compile(
    r"^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?$"
)


class Mode(StrEnum):
    """What a namespace asks of egress-guard (the `mode` namespace label)."""

    ENFORCE = "enforce"
    WARN = "warn"
    AUDIT = "audit"


class Inject(StrEnum):
    """What egress-guard injects at creation time (the `inject` namespace label)."""

    NETWORKPOLICY = "networkpolicy"
    PROXY = "proxy"
    ALL = "all"
    NONE = "none"

    @property
    def network_policies(self) -> bool:
        return self in (Inject.NETWORKPOLICY, Inject.ALL)

    @property
    def proxy_env(self) -> bool:
        return self in (Inject.PROXY, Inject.ALL)


def _check_label_value(value: str, what: str) -> str:
    if not is_label_value(value):
        raise ValueError(
            f"{what} {value!r} is not a valid Kubernetes label value "
            "(at most 63 characters: letters, digits, '-', '_', '.', starting and ending "
            "with a letter or digit)"
        )
    return value


def _check_label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if prefix and not is_dns1123_subdomain(prefix):
        raise ValueError(f"label key {key!r} has an invalid prefix {prefix!r}")
    if not is_qualified_name(name):
        raise ValueError(f"label key {key!r} is not a valid Kubernetes label name")
    return key


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        _check_label_key(key)
        _check_label_value(value, f"label {key}")
    return labels


def _check_namespace_name(name: str) -> str:
    if not is_dns1123_label(name):
        raise ValueError(f"{name!r} is not a valid namespace name (a DNS-1123 label)")
    return name


def _check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    return port


NamespaceName = Annotated[str, AfterValidator(_check_namespace_name)]
PortNumber = Annotated[int, AfterValidator(_check_port)]
Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]
"""A label map (a selector's matchLabels) whose keys and values Kubernetes would accept."""


class _Model(BaseModel):
    """Shared configuration: camelCase keys as in Kubernetes, typos rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Any:
        """A copy without the values derived from the original (cached properties, the memo):
        they would describe the original, not the copy."""
        copy = super().model_copy(update=update, deep=deep)
        for klass in type(self).__mro__:
            for name, attribute in vars(klass).items():
                if isinstance(attribute, cached_property):
                    copy.__dict__.pop(name, None)
        return copy


class PortSpec(_Model):
    """A destination port; a bare integer in the file means that port over TCP."""

    port: int | str
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    end_port: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_int(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            return {"port": data}
        return data

    @field_validator("port")
    @classmethod
    def _port_in_range(cls, port: int | str) -> int | str:
        if isinstance(port, int):
            _check_port(port)
        elif len(port) > 15 or not is_dns1123_label(port) or not re.search("[a-z]", port):
            raise ValueError(f"named port {port!r} is not a valid IANA service name")
        return port

    @model_validator(mode="after")
    def _end_port_after_port(self) -> PortSpec:
        if self.end_port is not None:
            if not isinstance(self.port, int):
                raise ValueError("endPort needs a numeric port")
            if not self.port <= self.end_port <= 65535:
                raise ValueError(f"endPort {self.end_port} must lie between port and 65535")
        return self


Ports = Annotated[list[PortSpec], Field(default_factory=list)]


class Destination(_Model):
    """One place a profile may reach: an address range, a host name, or in-cluster peers."""

    cidr: str | None = None
    except_: list[str] = Field(default_factory=list, alias="except")
    host: str | None = None
    namespace_selector: Labels | None = None
    pod_selector: Labels | None = None
    ports: Ports

    @field_validator("cidr")
    @classmethod
    def _valid_cidr(cls, cidr: str | None) -> str | None:
        if cidr is not None:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as err:
                raise ValueError(f"{cidr!r} is not a network in CIDR notation ({err})") from None
        return cidr

    @field_validator("host")
    @classmethod
    def _valid_host(cls, host: str | None) -> str | None:
        if host is not None and (len(host) > 253 or not _HOSTNAME.match(host)):
            raise ValueError(f"{host!r} is not a valid host name")
        return host

    @model_validator(mode="after")
    def _one_kind_of_destination(self) -> Destination:
        kinds = [
            name
            for name, present in (
                ("cidr", self.cidr is not None),
                ("host", self.host is not None),
                (
                    "namespaceSelector/podSelector",
                    self.namespace_selector is not None or self.pod_selector is not None,
                ),
            )
            if present
        ]
        if len(kinds) != 1:
            raise ValueError(
                "a destination sets exactly one of cidr, host, or namespaceSelector/podSelector"
                + (f" (this one sets {' and '.join(kinds)})" if kinds else "")
            )
        if self.except_:
            if self.cidr is None:
                raise ValueError("except is only meaningful beside cidr")
            outer = ipaddress.ip_network(self.cidr)
            for item in self.except_:
                try:
                    inner = ipaddress.ip_network(item, strict=True)
                except ValueError as err:
                    raise ValueError(f"except entry {item!r} is not a network ({err})") from None
                if inner.version != outer.version or not inner.subnet_of(outer):  # type: ignore[arg-type]
                    raise ValueError(f"except entry {item} does not lie inside cidr {self.cidr}")
        return self


class Profile(_Model):
    """A named set of destinations a workload may reach.

    `host_network` and `secondary_networks` let its pods escape NetworkPolicies (the node's
    network, Multus interfaces): for node agents and network functions, said explicitly, since
    such pods reach whatever the node reaches.
    """

    description: str = ""
    allow: list[Destination] = Field(default_factory=list)
    proxy: bool = False
    host_network: bool = False
    secondary_networks: bool = False
    namespaces: list[NamespaceName] = Field(default_factory=list)
    """Where `host_network` and `secondary_networks` hold: profiles are not tied to namespaces,
    so without this list any tenant could label a pod with a node agent's profile."""
    tls_server_names: bool = False
    """With the cilium backend, a host's ports also require the TLS server name (SNI) to be the
    host (`serverNames`): for hosts behind addresses they share with others (a CDN), where
    `toFQDNs` alone would allow every name those addresses serve."""

    @model_validator(mode="after")
    def _server_names_need_ports(self) -> Profile:
        if self.tls_server_names:
            portless = [d.host for d in self.allow if d.host is not None and not d.ports]
            if portless:
                raise ValueError(
                    f"tlsServerNames: true needs the ports of every host ({', '.join(portless)} "
                    "lists none): the server name is checked on those ports, e.g. ports: [443]"
                )
        return self

    @model_validator(mode="after")
    def _escapes_name_their_namespaces(self) -> Profile:
        escapes = [
            name
            for name, on in (
                ("hostNetwork", self.host_network),
                ("secondaryNetworks", self.secondary_networks),
            )
            if on
        ]
        if escapes and not self.namespaces:
            raise ValueError(
                f"a profile with {' and '.join(escapes)}: true lets its pods escape "
                "NetworkPolicies: list the namespaces where that holds (namespaces: [...]), or "
                "any tenant could use it"
            )
        return self

    @cached_property
    def hosts(self) -> tuple[str, ...]:
        """The host names it allows: reached through the proxy, never by a NetworkPolicy."""
        return tuple(d.host for d in self.allow if d.host is not None)

    @property
    def uses_proxy(self) -> bool:
        """Its pods go through the proxy: it says so, or it names hosts, which only the proxy
        can tell apart."""
        return self.proxy or bool(self.hosts)


class DnsSettings(_Model):
    """Where cluster DNS runs: every generated default-deny policy keeps it reachable.

    `cidrs` are addresses DNS is answered on outside any pod: a node-local cache (NodeLocal
    DNSCache listens on 169.254.20.10 on every node), or resolvers outside the cluster. A pod
    selector cannot reach them, so they are allowed as address blocks on the same ports.
    """

    namespace: NamespaceName = "kube-system"
    pod_selector: Labels = Field(default_factory=lambda: {"k8s-app": "kube-dns"})
    ports: list[PortNumber] = Field(default_factory=lambda: [53], min_length=1)
    cidrs: list[str] = Field(default_factory=list)
    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain: Istio's Sidecars name the namespace's own Services by it
    (`./*.<namespace>.svc.<domain>`) rather than every host registered in the namespace."""

    @field_validator("cluster_domain")
    @classmethod
    def _valid_domain(cls, domain: str) -> str:
        if not is_dns1123_subdomain(domain):
            raise ValueError(f"{domain!r} is not a DNS domain (e.g. cluster.local)")
        return domain

    @field_validator("cidrs")
    @classmethod
    def _valid_cidrs(cls, cidrs: list[str]) -> list[str]:
        """Networks in CIDR notation; a bare address means that address alone (/32 or /128)."""
        normalised: list[str] = []
        for cidr in cidrs:
            try:
                network = ipaddress.ip_network(cidr, strict=True)
            except ValueError as err:
                raise ValueError(
                    f"dns.cidrs entry {cidr!r} is not an address or a network in CIDR notation "
                    f"(e.g. 169.254.20.10/32) ({err})"
                ) from None
            if str(network) not in normalised:
                normalised.append(str(network))
        return normalised


class ControlPlane(_Model):
    """Where Istio's control plane runs: a sidecar gets its configuration and certificates
    from it, so a default deny in a namespace that uses the istio backend lets pods reach it."""

    namespace: NamespaceName = "istio-system"
    pod_selector: Labels = Field(default_factory=lambda: {"app": "istiod"})
    ports: list[PortNumber] = Field(default_factory=lambda: [15012], min_length=1)


class IstioSettings(_Model):
    control_plane: ControlPlane = Field(default_factory=ControlPlane)


class ProxySettings(_Model):
    """The egress proxy: what to put in the env, and where its pods run."""

    url: str
    no_proxy: list[str] = Field(default_factory=list)
    namespace: NamespaceName
    pod_selector: Labels
    port: PortNumber

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
        try:
            _ = parts.port
        except ValueError as err:
            raise ValueError(f"{url!r} has an invalid port ({err})") from None
        return url

    @field_validator("no_proxy")
    @classmethod
    def _no_commas(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            if not entry or "," in entry or entry.strip() != entry:
                raise ValueError(
                    f"noProxy entry {entry!r} must be one non-empty name without commas"
                )
        return entries

    @cached_property
    def env(self) -> tuple[tuple[str, str], ...]:
        """The proxy variables, upper-case first, as containers receive them."""
        no_proxy = ",".join(self.no_proxy)
        pairs = (("HTTP_PROXY", self.url), ("HTTPS_PROXY", self.url), ("NO_PROXY", no_proxy))
        return pairs + tuple((name.lower(), value) for name, value in pairs)


class WorkloadKindSpec(_Model):
    """A custom kind that runs pods from a pod template at `spec.template` (an Argo Rollout, say).

    Declaring it puts it in the webhook rules (so the API server sends it and `check` reviews it)
    and in the RBAC that lets the reconciler and the namespace preview list it.
    """

    group: str
    version: str
    kind: str
    resource: str

    @field_validator("group")
    @classmethod
    def _valid_group(cls, group: str) -> str:
        if not is_dns1123_subdomain(group):
            raise ValueError(
                f"group {group!r} must be an API group, a DNS subdomain such as argoproj.io "
                "(the built-in kinds need no entry)"
            )
        return group

    @field_validator("version")
    @classmethod
    def _valid_version(cls, version: str) -> str:
        if not _API_VERSION.match(version):
            raise ValueError(f"version {version!r} is not an API version such as v1 or v1alpha1")
        return version

    @field_validator("kind")
    @classmethod
    def _valid_kind(cls, kind: str) -> str:
        if len(kind) > 63 or not _KIND.match(kind):
            raise ValueError(f"kind {kind!r} is not a kind name such as Rollout")
        return kind

    @field_validator("resource")
    @classmethod
    def _valid_resource(cls, resource: str) -> str:
        if not is_dns1123_label(resource):
            raise ValueError(
                f"resource {resource!r} is not a resource name: the lower-case plural, such as "
                "rollouts"
            )
        return resource

    @cached_property
    def as_kind(self) -> WorkloadKind:
        return WorkloadKind(self.group, self.version, self.kind, self.resource)


class Principals(_Model):
    """Users and groups, as the API server names them in a review's userInfo."""

    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)

    def include(self, user: str, groups: tuple[str, ...]) -> bool:
        return user in self.users or any(group in self.groups for group in groups)


class ForeignNetworkPolicies(StrEnum):
    """What becomes of a NetworkPolicy egress-guard did not generate that widens egress."""

    DENY = "deny"
    """Refused where the namespace enforces (warned under warn, recorded under audit)."""
    WARN = "warn"
    """Admitted with a warning, whatever the namespace's mode."""
    ALLOW = "allow"
    """Not checked."""


class Governance(_Model):
    """Who may get around what egress-guard enforces, beyond the cluster's own RBAC."""

    foreign_network_policies: ForeignNetworkPolicies = ForeignNetworkPolicies.DENY
    network_policy_editors: Principals = Field(default_factory=Principals)
    """Besides egress-guard itself, who may create, change or delete the NetworkPolicies it
    generates (a platform team's group, say)."""
    loosen_namespaces: Principals | None = None
    """Who may lower a namespace's mode or inject; None: whoever RBAC lets change namespaces."""


class NamespaceDefaults(_Model):
    """Namespace labels assumed where no cluster is reachable (local runs, the offline CLI)."""

    mode: Mode | None = None
    inject: Inject | None = None


class ReportSettings(_Model):
    """What the reconciler reports besides its log: one report per managed namespace, with a
    result per workload, in the schema Kyverno installs and Policy Reporter reads
    (`wgpolicyk8s.io/v1alpha2` PolicyReport) or its successor (`openreports.io/v1alpha1`)."""

    policy_reports: bool = False
    format: Literal["policyreport", "openreports"] = "policyreport"


class Policy(_Model):
    """The whole policy file."""

    label_prefix: str = "egress-guard.io"
    exempt_namespaces: list[NamespaceName] = Field(
        default_factory=lambda: [*SYSTEM_NAMESPACES, "egress-guard"]
    )
    dns: DnsSettings = Field(default_factory=DnsSettings)
    proxy: ProxySettings | None = None
    profiles: dict[str, Profile] = Field(default_factory=dict)
    namespaces: dict[NamespaceName, NamespaceDefaults] = Field(default_factory=dict)
    workload_kinds: list[WorkloadKindSpec] = Field(default_factory=list)
    governance: Governance = Field(default_factory=Governance)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    backends: list[Backend] = Field(default_factory=lambda: [Backend.NETWORKPOLICY])
    istio: IstioSettings = Field(default_factory=IstioSettings)
    """What profiles are rendered into: NetworkPolicies, Cilium policies (host names enforced
    through Cilium's DNS proxy), Istio objects (host names enforced by the sidecar); a namespace
    may narrow it with its `backends` label."""
    cluster_networks: list[str] = Field(default_factory=list)
    """The cluster's own pod and service ranges: a profile reaching the whole internet should
    except them (and the cloud metadata address); policy advice says so."""

    @field_validator("cluster_networks")
    @classmethod
    def _valid_cluster_networks(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as err:
                raise ValueError(
                    f"clusterNetworks entry {cidr!r} is not a network in CIDR notation ({err})"
                ) from None
        return cidrs

    @cached_property
    def memo(self) -> dict[object, object]:
        """Results of pure functions of this policy (rendered policies), kept for its lifetime.

        A cached_property lives in the instance's __dict__, where reading it is a plain lookup
        (a pydantic private attribute goes through `__getattr__`: microseconds per read).
        """
        return {}

    @field_validator("backends")
    @classmethod
    def _backends_once_each(cls, backends: list[Backend]) -> list[Backend]:
        if not backends:
            raise ValueError(
                "backends may not be empty: name at least one of "
                + ", ".join(b.value for b in Backend)
            )
        repeated = sorted({b.value for b in backends if backends.count(b) > 1})
        if repeated:
            raise ValueError(f"backends lists {', '.join(repeated)} more than once")
        return backends

    @cached_property
    def backend_set(self) -> tuple[Backend, ...]:
        """The file's backends in their canonical order (as a namespace's are compared)."""
        return tuple(b for b in Backend if b in self.backends)

    @field_validator("label_prefix")
    @classmethod
    def _valid_prefix(cls, prefix: str) -> str:
        if not is_dns1123_subdomain(prefix):
            raise ValueError(f"{prefix!r} is not a DNS subdomain (e.g. egress-guard.io)")
        return prefix

    @field_validator("profiles")
    @classmethod
    def _profile_names_are_label_values(cls, profiles: dict[str, Profile]) -> dict[str, Profile]:
        for name in profiles:
            if not name:
                raise ValueError("a profile name may not be empty")
            _check_label_value(name, "profile name")
        return profiles

    @model_validator(mode="after")
    def _proxy_profiles_need_a_proxy(self) -> Policy:
        if self.proxy is None:
            needing = sorted(name for name, profile in self.profiles.items() if profile.proxy)
            if needing:
                raise ValueError(
                    f"profiles {', '.join(needing)} set proxy: true, "
                    "but the file has no proxy section"
                )
        return self

    @field_validator("workload_kinds")
    @classmethod
    def _workload_kinds_are_new(cls, specs: list[WorkloadKindSpec]) -> list[WorkloadKindSpec]:
        seen_kinds = {k.key for k in BUILTIN_KINDS}
        seen_resources = {(k.group, k.resource) for k in BUILTIN_KINDS}
        for spec in specs:
            if builtin_kind(spec.group, spec.kind) is not None:
                raise ValueError(f"{spec.kind}.{spec.group} is built in: it needs no entry")
            if (spec.group, spec.kind) in seen_kinds:
                raise ValueError(f"{spec.kind}.{spec.group} is listed twice")
            if (spec.group, spec.resource) in seen_resources:
                raise ValueError(f"{spec.resource}.{spec.group} is listed twice")
            seen_kinds.add((spec.group, spec.kind))
            seen_resources.add((spec.group, spec.resource))
        return specs

    @cached_property
    def reviewed_kinds(self) -> tuple[WorkloadKind, ...]:
        """Every kind the validating webhook is sent: the file's workloadKinds, then the built-in
        ones (owners before what they own, as listings want them)."""
        return (*(spec.as_kind for spec in self.workload_kinds), *BUILTIN_KINDS)

    @cached_property
    def _reviewed_by_key(self) -> dict[tuple[str, str], WorkloadKind]:
        return {
            (group, kind.kind): kind
            for kind in self.reviewed_kinds
            for group in (kind.group, *kind.equivalent_groups)
        }

    def reviewed_kind(self, group: str, kind: str) -> WorkloadKind | None:
        """The entry for (group, kind) if the webhook rules send that kind, else None."""
        return self._reviewed_by_key.get((group, kind))

    @cached_property
    def profile_label(self) -> str:
        return f"{self.label_prefix}/profile"

    @cached_property
    def mode_label(self) -> str:
        return f"{self.label_prefix}/mode"

    @cached_property
    def inject_label(self) -> str:
        return f"{self.label_prefix}/inject"

    @cached_property
    def backends_label(self) -> str:
        return f"{self.label_prefix}/backends"

    @cached_property
    def exempt(self) -> frozenset[str]:
        return frozenset(self.exempt_namespaces)

    @cached_property
    def profile_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.profiles))

    def static_namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        """The labels the `namespaces` table assumes for a namespace, or None if it has no entry."""
        entry = self.namespaces.get(namespace)
        if entry is None:
            return None
        labels: dict[str, str] = {}
        if entry.mode is not None:
            labels[self.mode_label] = entry.mode.value
        if entry.inject is not None:
            labels[self.inject_label] = entry.inject.value
        return labels
