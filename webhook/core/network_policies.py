"""NetworkPolicies from the policy file: a default-deny per namespace and an allow per profile.

Pure rendering: the same policy file, namespace and profile always give the same objects, each
carrying a hash of its own content so that drift (a stale or hand-edited copy) is detectable.

Objects are rendered as the API server stores them (empty lists and empty `matchLabels` left out,
every port's protocol explicit), so that a live copy read back compares equal to its rendering
and a comparison never reports drift that is not there.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.findings import HOST_NAMES, Finding, Severity, Subject, detail
from webhook.core.kube_names import DNS1123_LABEL_MAX, is_dns1123_label
from webhook.core.policy import Destination, Policy, PortSpec, Profile
from webhook.core.raw_object import section, text_at

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "egress-guard"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace: the one reliable way to select a namespace by name."""

DEFAULT_DENY_NAME = "egress-guard-default-deny"
PROFILE_NAME_PREFIX = "egress-guard-profile-"
_DIGEST_LENGTH = 8
_DIGEST_SUFFIX = re.compile(rf"-[0-9a-f]{{{_DIGEST_LENGTH}}}$")


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
    """A DNS-1123 label naming a profile's policy, distinct for every distinct profile name.

    A label, stricter than the subdomain the API asks of a NetworkPolicy name, so that the name
    also fits wherever a label value or a DNS label is expected (tooling, selectors, events).

    A profile name that is already a short DNS label is used as it is. Any other (upper case,
    dots, underscores, too long) becomes a slug plus a digest of the exact name, so `Web.API`,
    `web_api` and `web-api` get three names. A plain name never ends in `-` and eight hex digits,
    the shape every digest name ends in, so a plain name can never equal a digest name.
    """
    name = PROFILE_NAME_PREFIX + profile
    if is_dns1123_label(name) and not _DIGEST_SUFFIX.search(profile):
        return name
    room = DNS1123_LABEL_MAX - len(PROFILE_NAME_PREFIX)
    digest = hashlib.sha256(profile.encode()).hexdigest()[:_DIGEST_LENGTH]
    # A profile name is a label value: it starts and ends with a letter or digit, so its slug
    # does too, and only a cut can leave a '-' at the end.
    slug = re.sub(r"[^a-z0-9]+", "-", profile.lower())
    slug = slug[: room - _DIGEST_LENGTH - 1].rstrip("-")
    return f"{PROFILE_NAME_PREFIX}{slug}-{digest}"


def content_hash(content: Mapping[str, Any]) -> str:
    """A short, stable digest of a policy's labels and spec: equal content, equal hashes."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _selector(labels: Mapping[str, str]) -> dict[str, Any]:
    """A label selector as stored: `{}` (everything) rather than an empty matchLabels."""
    return {"matchLabels": dict(labels)} if labels else {}


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
        "podSelector": _selector(pod_selector),
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
            peer["namespaceSelector"] = _selector(destination.namespace_selector)
        if destination.pod_selector is not None:
            peer["podSelector"] = _selector(destination.pod_selector)
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
    return generated_manifest(
        ("networking.k8s.io/v1", "NetworkPolicy"),
        name,
        namespace,
        spec,
        component=component,
        policy=policy,
        extra_labels=extra_labels,
    )


def generated_manifest(
    type_: tuple[str, str],
    name: str,
    namespace: str,
    spec: dict[str, Any],
    *,
    component: str,
    policy: Policy,
    extra_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An object egress-guard generates, of any (apiVersion, kind): managed-by and component
    labels, and the hash of its labels and spec, which is how drift is told."""
    keys = GeneratedKeys.of(policy)
    labels = {MANAGED_BY_LABEL: MANAGED_BY, keys.component_label: component, **(extra_labels or {})}
    api_version, kind = type_
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {keys.hash_annotation: content_hash({"labels": labels, "spec": spec})},
        },
        "spec": spec,
    }


def render_default_deny(namespace: str, policy: Policy, *, mesh: bool = False) -> dict[str, Any]:
    """Every pod in the namespace: no egress but DNS (the DNS pods, and any `dns.cidrs`: a
    node-local cache is no pod a selector can reach), and Istio's control plane where the
    namespace also uses the istio backend (`mesh`): its sidecars get their configuration there."""
    dns = policy.dns
    spec: dict[str, Any] = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    _namespace_peer(dns.namespace, dns.pod_selector),
                    *({"ipBlock": {"cidr": cidr}} for cidr in dns.cidrs),
                ],
                "ports": [
                    {"protocol": protocol, "port": port}
                    for port in dns.ports
                    for protocol in ("UDP", "TCP")
                ],
            }
        ],
    }
    if mesh:
        plane = policy.istio.control_plane
        spec["egress"].append(
            {
                "to": [_namespace_peer(plane.namespace, plane.pod_selector)],
                "ports": [{"protocol": "TCP", "port": port} for port in plane.ports],
            }
        )
    return _manifest(DEFAULT_DENY_NAME, namespace, spec, component="default-deny", policy=policy)


def reaches_proxy(profile: Profile, policy: Policy, *, namespace_injects_all: bool) -> bool:
    """Pods of this profile may reach the proxy: the profile asks for it (`proxy: true`), or it
    names hosts and the namespace injects the proxy variables (`inject: all`).

    Only a profile that uses the proxy gets a route to it: the proxy reaches many hosts, and a
    route for every profile would let one that allows nothing reach all of them.
    """
    return policy.proxy is not None and (
        profile.proxy or (namespace_injects_all and bool(profile.hosts))
    )


def render_profile(
    namespace: str, profile_name: str, policy: Policy, *, namespace_injects_all: bool = False
) -> dict[str, Any]:
    """Pods labelled with the profile: egress to the profile's destinations (and the proxy).

    A profile that allows nothing still gets its (rule-less) policy, so every profile in use has
    one and the reconciler reads the same set off the cluster that admission creates.
    """
    profile = policy.profiles[profile_name]
    rules = [rule for rule in map(_rule, profile.allow) if rule is not None]
    if policy.proxy is not None and reaches_proxy(
        profile, policy, namespace_injects_all=namespace_injects_all
    ):
        proxy = policy.proxy
        rules.append(
            {
                "to": [_namespace_peer(proxy.namespace, proxy.pod_selector)],
                "ports": [{"protocol": "TCP", "port": proxy.port}],
            }
        )
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": {policy.profile_label: profile_name}},
        "policyTypes": ["Egress"],
    }
    if rules:
        spec["egress"] = rules
    return _manifest(
        profile_policy_name(profile_name),
        namespace,
        spec,
        component="profile",
        policy=policy,
        extra_labels={GeneratedKeys.of(policy).profile_label: profile_name},
    )


def unexpressible(
    profile_name: str, policy: Policy, *, namespace_injects_all: bool
) -> tuple[Finding, ...]:
    """Findings for destinations no NetworkPolicy can express (host names), with what to do.

    Silent only where the pods reach the proxy, which is how a host name is reached. Memoised on
    the policy: the same findings for every review of the profile.
    """
    key = (unexpressible, profile_name, namespace_injects_all)
    cached = policy.memo.get(key)
    if cached is None:
        profile = policy.profiles[profile_name]
        cached = ()
        if not reaches_proxy(profile, policy, namespace_injects_all=namespace_injects_all):
            cached = tuple(
                Finding(
                    HOST_NAMES,
                    Severity.ADVICE,
                    Subject("profile", profile_name),
                    f"allows host {d.host}, which no NetworkPolicy can express",
                    "route it via the proxy",
                    detail(host=d.host),
                )
                for d in profile.allow
                if d.host is not None
            )
        policy.memo[key] = cached
    return cached  # type: ignore[return-value]


def is_generated(obj: Mapping[str, Any]) -> bool:
    """The object carries egress-guard's managed-by label: egress-guard may change or delete it."""
    return section(obj, "metadata", "labels").get(MANAGED_BY_LABEL) == MANAGED_BY


def matches_rendered(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """A live copy is in place: same spec, same hash annotation, and every label egress-guard
    sets. Labels and annotations others add are theirs and do not count as drift."""
    if live.get("spec") != desired["spec"]:
        return False
    live_labels = section(live, "metadata", "labels")
    live_annotations = section(live, "metadata", "annotations")
    wanted_labels = section(desired, "metadata", "labels")
    wanted_annotations = section(desired, "metadata", "annotations")
    return all(live_labels.get(k) == v for k, v in wanted_labels.items()) and all(
        live_annotations.get(k) == v for k, v in wanted_annotations.items()
    )


def replacement(live: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The body that replaces a drifted live copy with its rendering.

    It names the resourceVersion read, so a concurrent change makes the API server answer 409
    instead of being overwritten, and it keeps labels and annotations others added.
    """
    metadata = dict(desired["metadata"])
    metadata["labels"] = {
        **section(live, "metadata", "labels"),
        **section(desired, "metadata", "labels"),
    }
    metadata["annotations"] = {
        **section(live, "metadata", "annotations"),
        **section(desired, "metadata", "annotations"),
    }
    resource_version = text_at(live, "metadata", "resourceVersion")
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {**desired, "metadata": metadata}
