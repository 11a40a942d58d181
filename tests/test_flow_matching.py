"""Declared versus observed, the pure part: each kind of destination from both sides (declared
and not), DNS and the proxy, the workload a pod belongs to, the tally, and suggested profiles."""

from __future__ import annotations

from typing import Any

import pytest
from builders import PROFILE, policy_with

from webhook.core.flow_matching import (
    CACHE_LIMIT,
    FlowAudit,
    FlowMatcher,
    ObservedFlow,
    Peer,
    Target,
    host_matches,
    port_allowed,
    suggest,
    suggested_profile_name,
    workload_name,
)
from webhook.core.policy import Policy, PortSpec


@pytest.fixture(scope="module")
def wide(policy: Policy) -> Policy:
    """The example policy, plus a profile of every other kind of entry, and a node-local DNS
    cache."""
    profiles = policy.model_dump(by_alias=True)["profiles"]
    profiles["mixed"] = {
        "allow": [
            {"host": "*.s3.amazonaws.com", "ports": [443]},
            {"host": "Registry.Example.COM"},
            {"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"], "ports": [5432]},
            {"cidr": "192.0.2.0/24", "ports": [{"port": 8000, "endPort": 8100}]},
            {"cidr": "198.51.100.0/24", "ports": [{"port": 514, "protocol": "UDP"}]},
            {"cidr": "203.0.113.0/24", "ports": [{"port": "https"}]},
            {"cidr": "2001:db8::/32"},
            {"podSelector": {"app": "cache"}, "ports": [6379]},
            {"namespaceSelector": {"team": "data"}},
        ]
    }
    dns = {"namespace": "kube-system", "podSelector": {"k8s-app": "kube-dns"}, "ports": [53]}
    dns["cidrs"] = ["169.254.20.10/32"]
    return policy_with(policy, profiles=profiles, dns=dns)


def flow(**fields: Any) -> ObservedFlow:
    values: dict[str, Any] = {
        "namespace": "shop",
        "pod": "web-7d4b9c8f6d-x2k9p",
        "labels": {"app": "web"},
        "ip": "93.184.216.34",
        "port": 443,
        "protocol": "TCP",
    }
    values.update(fields)
    return ObservedFlow(**values)


def peer(namespace: str, ns_labels: dict[str, str] | None = None, **labels: str) -> Peer:
    known = tuple(sorted(ns_labels.items())) if ns_labels is not None else None
    return Peer(namespace, tuple(sorted(labels.items())), known, labels.get("app", ""))


def declared(policy: Policy, profile: str | None, **fields: Any) -> tuple[bool, str]:
    match = FlowMatcher(policy).match(flow(**fields), profile)
    return match.declared, match.why


# --- DNS and the proxy ------------------------------------------------------------------------


KUBE_DNS = peer("kube-system", None, **{"k8s-app": "kube-dns"})


@pytest.mark.parametrize("profile", [None, "none", "stripe", "nosuchprofile"])
def test_dns_to_the_dns_pods_is_declared_for_every_workload(policy: Policy, profile: Any) -> None:
    for protocol in ("UDP", "TCP"):
        assert declared(
            policy, profile, ip="10.244.0.5", port=53, protocol=protocol, peer=KUBE_DNS
        ) == (True, "dns")


def test_dns_elsewhere_or_on_another_port_is_not(policy: Policy, wide: Policy) -> None:
    assert not declared(policy, "none", ip="10.244.0.5", port=5353, protocol="UDP", peer=KUBE_DNS)[
        0
    ]
    other = peer("kube-system", None, **{"k8s-app": "not-dns"})
    assert not declared(policy, "none", ip="10.244.0.5", port=53, protocol="UDP", peer=other)[0]
    assert not declared(policy, "none", ip="8.8.8.8", port=53, protocol="UDP")[0]
    assert declared(wide, "none", ip="169.254.20.10", port=53, protocol="UDP") == (True, "dns")
    assert not declared(wide, "none", ip="169.254.20.11", port=53, protocol="UDP")[0]
    assert not declared(wide, "none", ip="169.254.20.10", port=53, protocol="SCTP")[0]


PROXY_POD = peer("egress-system", None, app="egress-proxy")


@pytest.mark.parametrize(
    ("profile", "allowed"),
    [("web-via-proxy", True), ("stripe", True), ("none", False), ("internal", False)],
)
def test_the_proxy_is_declared_for_profiles_that_use_it(
    policy: Policy, profile: str, allowed: bool
) -> None:
    by_pod = declared(policy, profile, ip="10.244.2.31", port=3128, peer=PROXY_POD)
    by_name = declared(
        policy,
        profile,
        ip="10.96.14.2",
        port=3128,
        names=("egress-proxy.egress-system.svc.cluster.local",),
    )
    for found in (by_pod, by_name):
        assert found[0] is allowed
        assert found[1] == ("proxy" if allowed else f"profile {profile} does not use the proxy")


def test_the_proxy_is_its_pods_on_its_port(policy: Policy) -> None:
    other_port = declared(policy, "web-via-proxy", ip="10.244.2.31", port=9090, peer=PROXY_POD)
    assert other_port == (False, "not in profile web-via-proxy")
    other_pod = peer("egress-system", None, app="something-else")
    assert not declared(policy, "web-via-proxy", ip="10.244.2.32", port=3128, peer=other_pod)[0]
    assert not declared(
        policy, "web-via-proxy", ip="10.244.2.31", port=3128, protocol="UDP", peer=PROXY_POD
    )[0]
    no_proxy = policy_with(policy, proxy=None, profiles={"none": {}})
    assert not declared(no_proxy, "none", ip="10.244.2.31", port=3128, peer=PROXY_POD)[0]


# --- CIDRs, ports, hosts -----------------------------------------------------------------------


def test_cidr_and_its_ports(policy: Policy) -> None:
    assert declared(policy, "stripe", ip="34.210.129.17") == (
        True,
        "cidr 34.210.129.0/24 ports 443",
    )
    assert declared(policy, "stripe", ip="34.210.129.17", port=80) == (
        False,
        "cidr 34.210.129.0/24 ports 443: not port 80/TCP",
    )
    assert declared(policy, "stripe", ip="34.210.129.17", protocol="UDP")[0] is False
    assert declared(policy, "stripe", ip="34.210.130.1") == (False, "not in profile stripe")


def test_cidr_except(wide: Policy) -> None:
    assert declared(wide, "mixed", ip="10.1.2.3", port=5432)[0]
    assert declared(wide, "mixed", ip="10.96.0.10", port=5432) == (False, "not in profile mixed")
    assert declared(wide, "mixed", ip="10.111.255.255", port=5432)[0] is False
    assert declared(wide, "mixed", ip="10.112.0.0", port=5432)[0]


def test_port_ranges_protocols_and_named_ports(wide: Policy) -> None:
    assert declared(wide, "mixed", ip="192.0.2.9", port=8000)[0]
    assert declared(wide, "mixed", ip="192.0.2.9", port=8100)[0]
    assert not declared(wide, "mixed", ip="192.0.2.9", port=8101)[0]
    assert declared(wide, "mixed", ip="198.51.100.1", port=514, protocol="UDP")[0]
    assert not declared(wide, "mixed", ip="198.51.100.1", port=514, protocol="TCP")[0]
    # a named port cannot be resolved from a flow: any port of its protocol
    assert declared(wide, "mixed", ip="203.0.113.1", port=8443)[0]
    assert not declared(wide, "mixed", ip="203.0.113.1", port=8443, protocol="UDP")[0]
    # no ports: every port, and flows without one (ICMP)
    assert declared(wide, "mixed", ip="2001:db8::1", port=None, protocol="ICMPv6")[0]
    assert not declared(wide, "mixed", ip="2001:db9::1", port=None, protocol="ICMPv6")[0]


def test_an_ipv4_flow_never_matches_an_ipv6_range_and_a_bad_address_matches_no_range(
    wide: Policy,
) -> None:
    assert not declared(wide, "mixed", ip="32.1.13.184", port=1)[0]
    assert not declared(wide, "mixed", ip="not-an-address", port=5432)[0]


def test_port_allowed() -> None:
    assert port_allowed([], None, "ICMPv4")
    assert not port_allowed([PortSpec(port=443)], None, "ICMPv4")
    assert port_allowed([PortSpec(port=53, protocol="UDP"), PortSpec(port=443)], 443, "TCP")


def test_hosts_by_the_names_the_flow_carries(policy: Policy, wide: Policy) -> None:
    assert declared(policy, "stripe", ip="54.187.216.72", names=("api.stripe.com",)) == (
        True,
        "host api.stripe.com",
    )
    assert declared(policy, "stripe", ip="54.187.216.72", names=("x.stripe.com", "api.stripe.com"))[
        0
    ]
    assert not declared(policy, "stripe", ip="54.187.216.72", names=("stripe.com",))[0]
    assert not declared(policy, "stripe", ip="54.187.216.72")[0]
    # a host entry's letter case does not matter (names arrive in lower case)
    assert declared(wide, "mixed", ip="1.2.3.4", names=("registry.example.com",), port=5000)[0]


def test_wildcard_hosts(wide: Policy) -> None:
    for name in ("bucket.s3.amazonaws.com", "a.b.s3.amazonaws.com"):
        assert declared(wide, "mixed", ip="52.216.1.1", names=(name,)) == (
            True,
            "host *.s3.amazonaws.com ports 443",
        )
    assert not declared(wide, "mixed", ip="52.216.1.1", names=("s3.amazonaws.com",))[0]
    assert not declared(wide, "mixed", ip="52.216.1.1", names=("evils3.amazonaws.com",))[0]
    assert not declared(
        wide, "mixed", ip="52.216.1.1", names=("bucket.s3.amazonaws.com",), port=80
    )[0]
    assert host_matches("*.example.com.", "a.example.com")


# --- in-cluster peers ------------------------------------------------------------------------


def test_peers_by_namespace_and_pod_labels(policy: Policy) -> None:
    ledger = peer("payments", {"team": "payments"}, app="ledger")
    why = "namespaceSelector {team: payments} podSelector {app: ledger} ports 8080"
    assert declared(policy, "internal", ip="10.244.1.40", port=8080, peer=ledger) == (True, why)
    assert declared(policy, "internal", ip="10.244.1.40", port=8081, peer=ledger) == (
        False,
        f"{why}: not port 8081/TCP",
    )
    elsewhere = peer("billing", {"team": "billing"}, app="ledger")
    assert declared(policy, "internal", ip="10.244.1.41", port=8080, peer=elsewhere) == (
        False,
        "not in profile internal",
    )
    other_app = peer("payments", {"team": "payments"}, app="ledger-db")
    assert not declared(policy, "internal", ip="10.244.1.42", port=8080, peer=other_app)[0]


def test_a_peer_whose_namespace_labels_the_record_lacks_is_not_declared_and_says_why(
    policy: Policy,
) -> None:
    ledger = peer("payments", None, app="ledger")
    assert declared(policy, "internal", ip="10.244.1.40", port=8080, peer=ledger) == (
        False,
        "namespaceSelector {team: payments} podSelector {app: ledger} ports 8080: "
        "namespace labels not in the flow record",
    )


def test_namespace_name_label_is_always_known(policy: Policy) -> None:
    profiles = {
        "by-name": {"allow": [{"namespaceSelector": {"kubernetes.io/metadata.name": "data"}}]}
    }
    by_name = policy_with(policy, profiles=profiles)
    assert declared(
        by_name, "by-name", ip="10.244.5.5", port=9000, peer=peer("data", None, app="x")
    )[0]
    assert not declared(by_name, "by-name", ip="10.244.5.5", port=9000, peer=peer("other", None))[0]


def test_a_pod_selector_alone_means_the_workloads_own_namespace(wide: Policy) -> None:
    same = peer("shop", {}, app="cache")
    assert declared(wide, "mixed", ip="10.244.2.9", port=6379, peer=same)[0]
    assert not declared(
        wide, "mixed", ip="10.244.2.9", port=6379, peer=peer("other", {}, app="cache")
    )[0]
    # a namespace selector alone: every pod of the namespaces it selects
    assert declared(wide, "mixed", ip="10.244.7.7", port=1, peer=peer("lake", {"team": "data"}))[0]
    # a peer is not reached through an address or host entry's selector
    assert not declared(wide, "mixed", ip="10.244.2.9", port=6379)[0]


def test_without_a_profile_or_with_an_unknown_one_nothing_but_dns_is_declared(
    policy: Policy,
) -> None:
    assert declared(policy, None, ip="34.210.129.17") == (False, "no profile label")
    assert declared(policy, "strpe", ip="34.210.129.17") == (
        False,
        "profile strpe is not in the policy file",
    )
    assert declared(policy, None, ip="10.244.2.31", port=3128, peer=PROXY_POD) == (
        False,
        "no profile label",
    )


# --- workloads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod", "labels", "owner", "expected"),
    [
        ("checkout-7d4b9c8f6d-x2k9p", {}, "checkout-owner", "checkout-owner"),
        (
            "my-app-v2-7d4b9c8f6d-x2k9p",
            {"pod-template-hash": "7d4b9c8f6d", "app": "other"},
            "",
            "my-app-v2",
        ),
        ("report-29012345-q7wfz", {"job-name": "report-29012345"}, "", "report"),
        ("migrate-q7wfz", {"batch.kubernetes.io/job-name": "migrate"}, "", "migrate"),
        (
            "db-12",
            {"controller-revision-hash": "db-6d8f", "statefulset.kubernetes.io/pod-name": "db-12"},
            "",
            "db",
        ),
        (
            "agent-x7k2p",
            {"controller-revision-hash": "5d9f", "pod-template-generation": "3"},
            "",
            "agent",
        ),
        ("whatever-1", {"app.kubernetes.io/name": "shop-ui", "app": "ui"}, "", "shop-ui"),
        ("whatever", {"app": "ui"}, "", "ui"),
        ("api-5f6d7c8b9a-zp4lm", {}, "", "api"),
        ("legacy-batch-7", {}, "", "legacy-batch"),
        ("debug", {}, "", "debug"),
        ("debug-shell", {}, "", "debug-shell"),
    ],
)
def test_workload_name(pod: str, labels: dict[str, str], owner: str, expected: str) -> None:
    assert workload_name(pod, labels, owner) == expected


def test_a_peer_is_selected_by_its_naming_label_else_its_stable_labels() -> None:
    assert peer("a", None, app="cart", tier="web").selector() == (("app", "cart"),)
    stable = Peer("a", (("pod-template-hash", "5c7b"), ("tier", "web")))
    assert stable.selector() == (("tier", "web"),)


# --- the tally -------------------------------------------------------------------------------


def test_the_audit_counts_per_workload_and_destination(policy: Policy) -> None:
    audit = FlowAudit(policy)
    labels = {"app": "checkout", "pod-template-hash": "7d4b9c8f6d", PROFILE: "stripe"}
    pods = ("checkout-7d4b9c8f6d-x2k9p", "checkout-7d4b9c8f6d-4mzq8")
    for pod in pods:
        audit.add(flow(namespace="payments", pod=pod, labels=labels, ip="34.210.129.17"))
        audit.add(
            flow(
                namespace="payments",
                pod=pod,
                labels=labels,
                ip="140.82.112.3",
                names=("api.github.com",),
            )
        )
        audit.add(
            flow(
                namespace="payments",
                pod=pod,
                labels=labels,
                ip="140.82.112.4",
                names=("api.github.com",),
                dropped=True,
            )
        )
    audit.add(flow(namespace="kube-system", pod="coredns-1", labels={}, ip="1.1.1.1", port=53))
    (tally,) = audit.workloads.values()
    assert (tally.namespace, tally.workload, tally.profile, tally.profile_known) == (
        "payments",
        "checkout",
        "stripe",
        True,
    )
    assert (tally.flows, tally.dropped, tally.declared_flows, tally.undeclared_flows) == (
        6,
        2,
        2,
        4,
    )
    github = Target("host", "api.github.com", 443, "TCP")
    assert list(tally.undeclared) == [github]
    assert (tally.undeclared[github].flows, tally.undeclared[github].dropped) == (4, 2)
    assert audit.skipped == {"exempt namespace": 1}
    assert audit.undeclared_destinations == 1


def test_pods_of_one_workload_on_two_profiles_are_two_rows(policy: Policy) -> None:
    audit = FlowAudit(policy)
    audit.add(flow(labels={"pod-template-hash": "7d4b9c8f6d", PROFILE: "none"}))
    audit.add(
        flow(
            pod="web-5c5c5c5c5c-abcde",
            labels={"pod-template-hash": "5c5c5c5c5c", PROFILE: "stripe"},
        )
    )
    assert sorted(audit.workloads) == [("shop", "web", "none"), ("shop", "web", "stripe")]


def test_the_memo_is_bounded(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("webhook.core.flow_matching.CACHE_LIMIT", 10)
    audit = FlowAudit(policy)
    for n in range(50):
        audit.add(flow(pod=f"web-{n}", ip=f"192.0.2.{n}"))
    assert len(audit._memo) <= 11 and len(audit._sources) <= 11
    assert audit.flows == 50 and audit.undeclared_destinations == 50
    assert CACHE_LIMIT >= 10_000


# --- suggestions -----------------------------------------------------------------------------


def test_the_smallest_profile_covering_what_was_seen(policy: Policy) -> None:
    audit = FlowAudit(policy)
    seen = [
        flow(ip="151.101.1.229", names=("cdn.jsdelivr.net",)),
        flow(ip="151.101.65.229", names=("cdn.jsdelivr.net",)),
        flow(ip="151.101.65.229", port=80, names=("cdn.jsdelivr.net",)),
        flow(ip="52.95.110.1"),
        flow(ip="162.159.200.1", port=123, protocol="UDP"),
        flow(ip="2606:4700:4700::1111"),
        flow(ip="192.0.2.44", port=None, protocol="ICMPv4"),
        flow(
            ip="10.244.2.77",
            port=8080,
            peer=peer("shop", {}, app="cart", **{"pod-template-hash": "5c7b"}),
        ),
        flow(ip="10.244.2.31", port=3128, peer=PROXY_POD),
        flow(ip="10.244.0.5", port=53, protocol="UDP", peer=KUBE_DNS),
        flow(ip="198.51.100.7", port=22, dropped=True),
    ]
    for observed in seen:
        audit.add(observed)
    (tally,) = audit.workloads.values()
    suggestion = suggest(tally)
    assert suggestion.name == "shop-web"
    assert suggestion.profile == {
        "description": "shop/web, from observed flows",
        "allow": [
            {"host": "cdn.jsdelivr.net", "ports": [80, 443]},
            {"cidr": "52.95.110.1/32", "ports": [443]},
            {"cidr": "162.159.200.1/32", "ports": [{"port": 123, "protocol": "UDP"}]},
            {"cidr": "192.0.2.44/32"},
            {"cidr": "2606:4700:4700::1111/128", "ports": [443]},
            {
                "namespaceSelector": {"kubernetes.io/metadata.name": "shop"},
                "podSelector": {"app": "cart"},
                "ports": [8080],
            },
        ],
        "proxy": True,
    }
    assert [str(target) for target, _ in suggestion.left_out] == ["198.51.100.7:22/TCP"]
    assert suggestion.flows == 9


def test_suggested_profile_names_are_label_values() -> None:
    assert suggested_profile_name("shop", "web") == "shop-web"
    long = suggested_profile_name("a" * 40, "b" * 40)
    assert len(long) == 63
    assert suggested_profile_name("ns", "we:ird_") == "ns-we-ird"
    assert suggested_profile_name("-", "-") == "suggested"
