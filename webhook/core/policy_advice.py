"""Advice about the policy file itself: what a valid file allows that its author likely did not
mean. Said when the file is loaded (the log), by `check` and by `render`.

A profile that reaches the whole internet (`0.0.0.0/0`, `::/0`) reaches everything with an
address: the cloud's metadata service (169.254.169.254 on every major cloud, handing out the
node's credentials) and the cluster's own pod and service ranges, unless it excepts them. Istio
as the only backend holds pods through their sidecars alone, which a pod can bypass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from webhook.core.backends import sidecars_alone
from webhook.core.findings import BACKEND_LIMITS, Finding, Severity, Subject, detail, register
from webhook.core.policy import Destination, Policy

CHECK_ID = register(
    "open-network",
    "a profile allowing an address range that holds the cloud metadata address or the cluster's "
    "own ranges without excepting them",
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: tuple[Network, ...] = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)
"""The cloud metadata service (the IPv6 address is AWS's)."""

PRIVATE_RANGES: tuple[Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
"""Where a cluster's pod and service ranges usually are, when the file does not say
(`clusterNetworks`)."""


def _uncut(network: Network, allowed: Network, excepts: Sequence[Network]) -> bool:
    """`network` lies (partly) inside `allowed` and no except removes all of it."""
    if network.version != allowed.version or not network.overlaps(allowed):
        return False
    return not any(
        cut.version == network.version and network.subnet_of(cut)  # type: ignore[arg-type]
        for cut in excepts
    )


def _open_ranges(destination: Destination, cluster: Sequence[Network]) -> tuple[str, ...]:
    if destination.cidr is None:
        return ()
    allowed = ipaddress.ip_network(destination.cidr)
    excepts = [ipaddress.ip_network(e) for e in destination.except_]
    found = [str(m) for m in METADATA_ADDRESSES if _uncut(m, allowed, excepts)]
    if allowed.prefixlen == 0:
        found += [str(c) for c in cluster if _uncut(c, allowed, excepts)]
    return tuple(found)


def policy_advice(policy: Policy) -> tuple[Finding, ...]:
    """What the file allows that it probably should not, one finding per destination."""
    cluster: Sequence[Network] = (
        [ipaddress.ip_network(c) for c in policy.cluster_networks]
        if policy.cluster_networks
        else PRIVATE_RANGES
    )
    findings: list[Finding] = []
    for name in policy.profile_names:
        for destination in policy.profiles[name].allow:
            ranges = _open_ranges(destination, cluster)
            if ranges:
                findings.append(
                    Finding(
                        CHECK_ID,
                        Severity.ADVICE,
                        Subject("profile", name),
                        f"allows {destination.cidr} without excepting {', '.join(ranges)}",
                        "add them to the destination's except list (the metadata service hands "
                        "out the node's credentials; the cluster's ranges are its pods)",
                        detail(cidr=destination.cidr, unexcepted=ranges),
                        "add them to its except list",
                    )
                )
    if sidecars_alone(policy.backend_set):
        findings.append(
            Finding(
                BACKEND_LIMITS,
                Severity.ADVICE,
                None,
                "backends: istio alone holds pods only through their sidecars, which a pod can "
                "bypass (Istio says itself that it cannot enforce egress alone)",
                "add networkpolicy or cilium to backends",
                detail(backends=("istio",)),
            )
        )
    return tuple(findings)
