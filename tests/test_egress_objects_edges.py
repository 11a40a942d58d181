"""Edges of the objects each backend is made of, pinned whole: the kind a manifest is read as,
every object's namespace and labels across backends, the proxy route that `inject: all` adds,
the exact Cilium and Istio specs (ports, port ranges, DNS, address ranges, peers, entry names),
the phrases for what a backend leaves out, and the review of a tenant's own CiliumNetworkPolicy,
Sidecar or ServiceEntry (what widens, exactly what is said, what an UPDATE may keep)."""

from __future__ import annotations

from typing import Any

import pytest
from builders import policy_with

from webhook.core import cilium_policies, istio_objects
from webhook.core.backends import (
    CILIUM_NETWORK_POLICY,
    NETWORK_POLICY,
    SERVICE_ENTRY,
    SIDECAR,
    Backend,
    generated_kind,
)
from webhook.core.decision import Decision, Verdict
from webhook.core.egress_objects import egress_intents, profile_findings
from webhook.core.findings import Finding, Severity, Subject
from webhook.core.kube_names import own_users
from webhook.core.namespace import NamespaceContext, namespace_context
from webhook.core.network_policy_review import FOREIGN_WIDENS, review_network_policy
from webhook.core.policy import Mode, Policy
from webhook.core.request import AdmissionRequest

ALL_THREE = ["networkpolicy", "cilium", "istio"]
PROXY_SERVICES = "egress-system/*.egress-system.svc.cluster.local"
CILIUM_PROXY_RULE = {
    "toEndpoints": [
        {
            "matchLabels": {
                "k8s:io.kubernetes.pod.namespace": "egress-system",
                "k8s:app": "egress-proxy",
            }
        }
    ],
    "toPorts": [{"ports": [{"port": "3128", "protocol": "TCP"}]}],
}
CILIUM_DNS_RULE = {
    "toEndpoints": [
        {
            "matchLabels": {
                "k8s:io.kubernetes.pod.namespace": "kube-system",
                "k8s:k8s-app": "kube-dns",
            }
        }
    ],
    "toPorts": [
        {"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}
    ],
}


def generated_labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "egress-guard", "egress-guard.io/generated": component}


def with_profile(policy: Policy, allow: list[dict[str, Any]]) -> Policy:
    """The policy with one more profile, `p`."""
    profiles = {**policy.model_dump(by_alias=True)["profiles"], "p": {"allow": allow}}
    return policy_with(policy, profiles=profiles)


def context(policy: Policy, inject: str, backends: list[str] | None = None) -> NamespaceContext:
    """The context of namespace `shop` in enforce mode, its backends narrowed by the label."""
    labels = {policy.mode_label: "enforce", policy.inject_label: inject}
    if backends is not None:
        labels[policy.backends_label] = "_".join(backends)
    return namespace_context("shop", labels, policy)


@pytest.fixture
def meshed(policy: Policy) -> Policy:
    return policy_with(policy, backends=ALL_THREE)


class TestGeneratedKind:
    @pytest.mark.parametrize(
        ("render", "kind"),
        [
            (lambda p: cilium_policies.render_default_deny("shop", p), CILIUM_NETWORK_POLICY),
            (
                lambda p: istio_objects.render_profile("shop", "stripe", p).manifests[0],
                SERVICE_ENTRY,
            ),
            (lambda p: istio_objects.render_profile("shop", "none", p).manifests[0], SIDECAR),
        ],
    )
    def test_a_rendering_is_read_as_its_own_kind(
        self, policy: Policy, render: Any, kind: Any
    ) -> None:
        assert generated_kind(render(policy)) is kind

    def test_without_a_kind_it_is_a_network_policy(self) -> None:
        assert generated_kind({"metadata": {"name": "x"}}) is NETWORK_POLICY

    def test_an_unknown_kind_is_not_taken_for_a_network_policy(self) -> None:
        with pytest.raises(KeyError):
            generated_kind({"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy"})


class TestEgressIntents:
    @pytest.mark.parametrize("profile", ["stripe", "internal", None])
    def test_each_object_is_in_the_namespace(self, meshed: Policy, profile: str | None) -> None:
        (intent,) = egress_intents("shop", context(meshed, "all"), meshed, profile)
        assert [m["metadata"]["namespace"] for m in intent.manifests] == ["shop"] * len(
            intent.manifests
        )

    def test_inject_all_routes_a_profile_with_hosts_to_the_proxy_in_every_backend(
        self, meshed: Policy
    ) -> None:
        (intent,) = egress_intents("shop", context(meshed, "all"), meshed, "stripe")
        by_kind = {
            generated_kind(m).kind: m
            for m in intent.manifests
            if "profile" in m["metadata"]["name"]
        }
        assert CILIUM_PROXY_RULE in by_kind["CiliumNetworkPolicy"]["spec"]["egress"]
        assert PROXY_SERVICES in by_kind["Sidecar"]["spec"]["egress"][0]["hosts"]

    def test_without_inject_all_no_proxy_route(self, meshed: Policy) -> None:
        (intent,) = egress_intents("shop", context(meshed, "networkpolicy"), meshed, "stripe")
        by_kind = {
            generated_kind(m).kind: m
            for m in intent.manifests
            if "profile" in m["metadata"]["name"]
        }
        assert CILIUM_PROXY_RULE not in by_kind["CiliumNetworkPolicy"]["spec"]["egress"]
        assert PROXY_SERVICES not in by_kind["Sidecar"]["spec"]["egress"][0]["hosts"]


class TestProfileFindings:
    def test_memoised_per_policy(self, meshed: Policy) -> None:
        ctx = context(meshed, "all", ["istio"])
        first = profile_findings("shop", "stripe", ctx, meshed)
        assert first  # istio alone is said
        assert profile_findings("shop", "stripe", ctx, meshed) is first

    def test_what_cilium_and_istio_leave_out_is_said_once_each(self, meshed: Policy) -> None:
        policy = with_profile(
            meshed,
            [
                {"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"], "ports": [5432]},
                {"namespaceSelector": {"team": "payments"}, "ports": [8443]},
            ],
        )
        found = profile_findings("shop", "p", context(policy, "all", ["cilium", "istio"]), policy)
        assert [f.reason for f in found] == [
            "has peers in namespaces team=payments, which Cilium cannot select by label; left out",
            "has 10.0.0.0/8 except 10.96.0.0/12, which a ServiceEntry cannot say; left out",
            "has peers chosen by namespace labels, which a Sidecar cannot say; left out",
        ]


class TestCiliumExact:
    def test_the_default_deny(self, policy: Policy) -> None:
        manifest = cilium_policies.render_default_deny("shop", policy)
        assert manifest["metadata"]["name"] == "egress-guard-default-deny"
        assert manifest["metadata"]["namespace"] == "shop"
        assert manifest["metadata"]["labels"] == generated_labels("default-deny")
        assert manifest["spec"] == {"endpointSelector": {}, "egress": [CILIUM_DNS_RULE]}

    def test_the_default_deny_where_istio_is_used_reaches_its_control_plane(
        self, policy: Policy
    ) -> None:
        plane = policy_with(
            policy,
            istio={
                "controlPlane": {
                    "namespace": "mesh",
                    "podSelector": {"app": "istiod"},
                    "ports": [15012, 15017],
                }
            },
        )
        manifest = cilium_policies.render_default_deny("shop", plane, mesh=True)
        assert manifest["spec"]["egress"] == [
            CILIUM_DNS_RULE,
            {
                "toEndpoints": [
                    {
                        "matchLabels": {
                            "k8s:io.kubernetes.pod.namespace": "mesh",
                            "k8s:app": "istiod",
                        }
                    }
                ],
                "toPorts": [
                    {
                        "ports": [
                            {"port": "15012", "protocol": "TCP"},
                            {"port": "15017", "protocol": "TCP"},
                        ]
                    }
                ],
            },
        ]

    def test_the_dns_ports_and_a_node_local_cache(self, policy: Policy) -> None:
        cached = policy_with(
            policy,
            dns={
                "namespace": "kube-system",
                "podSelector": {"k8s-app": "kube-dns"},
                "ports": [53, 5353],
                "cidrs": ["169.254.20.10/32", "10.96.0.10"],
            },
        )
        egress = cilium_policies.render_default_deny("shop", cached)["spec"]["egress"]
        assert egress[0]["toEndpoints"] == CILIUM_DNS_RULE["toEndpoints"]
        assert egress[0]["toPorts"] == [
            {
                "ports": [{"port": "53", "protocol": "ANY"}, {"port": "5353", "protocol": "ANY"}],
                "rules": {"dns": [{"matchPattern": "*"}]},
            }
        ]
        assert [rule["toCIDRSet"] for rule in egress if "toCIDRSet" in rule] == [
            [{"cidr": "169.254.20.10/32"}, {"cidr": "10.96.0.10/32"}]  # an address, as a block
        ]

    def test_a_profile_s_metadata(self, policy: Policy) -> None:
        (manifest,) = cilium_policies.render_profile("shop", "stripe", policy).manifests
        assert manifest["metadata"]["namespace"] == "shop"
        assert manifest["metadata"]["labels"] == generated_labels("profile")

    def test_the_proxy_route_exactly_and_only_when_asked(self, policy: Policy) -> None:
        (routed,) = cilium_policies.render_profile(
            "shop", "stripe", policy, namespace_injects_all=True
        ).manifests
        assert routed["spec"]["egress"][-1] == CILIUM_PROXY_RULE
        (plain,) = cilium_policies.render_profile("shop", "stripe", policy).manifests
        assert CILIUM_PROXY_RULE not in plain["spec"]["egress"]

    def test_port_ranges_keep_their_end(self, policy: Policy) -> None:
        ranged = with_profile(
            policy,
            [
                {
                    "cidr": "10.1.0.0/16",
                    "ports": [{"port": 8000, "endPort": 8100, "protocol": "UDP"}, 9000],
                }
            ],
        )
        (manifest,) = cilium_policies.render_profile("shop", "p", ranged).manifests
        assert manifest["spec"]["egress"] == [
            {
                "toCIDRSet": [{"cidr": "10.1.0.0/16"}],
                "toPorts": [
                    {
                        "ports": [
                            {"port": "8000", "protocol": "UDP", "endPort": 8100},
                            {"port": "9000", "protocol": "TCP"},
                        ]
                    }
                ],
            }
        ]

    @pytest.mark.parametrize(
        ("selector", "said"),
        [
            ({"team": "payments", "tier": "db"}, "team=payments,tier=db"),
            (
                {"kubernetes.io/metadata.name": "billing", "team": "payments"},
                "kubernetes.io/metadata.name=billing,team=payments",
            ),
            ({}, "(all)"),
        ],
    )
    def test_namespace_labels_it_cannot_select_are_said(
        self, policy: Policy, selector: dict[str, str], said: str
    ) -> None:
        peers = with_profile(policy, [{"namespaceSelector": selector, "ports": [8443]}])
        rendered = cilium_policies.render_profile("shop", "p", peers)
        assert rendered.unrendered == (
            f"peers in namespaces {said}, which Cilium cannot select by label",
        )
        (manifest,) = rendered.manifests
        assert manifest["spec"]["egress"] == [CILIUM_DNS_RULE]  # nothing else, not all of them

    def test_a_rendered_peer_says_nothing(self, policy: Policy) -> None:
        peers = with_profile(
            policy,
            [{"namespaceSelector": {"kubernetes.io/metadata.name": "billing"}, "ports": [9000]}],
        )
        rendered = cilium_policies.render_profile("shop", "p", peers)
        assert rendered.unrendered == ()
        (manifest,) = rendered.manifests
        assert manifest["spec"]["egress"] == [
            {
                "toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "billing"}}],
                "toPorts": [{"ports": [{"port": "9000", "protocol": "TCP"}]}],
            }
        ]


def entries(rendered: cilium_policies.Rendered) -> list[dict[str, Any]]:
    return [m for m in rendered.manifests if m["kind"] == "ServiceEntry"]


def entry_for(rendered: cilium_policies.Rendered, field: str, value: str) -> dict[str, Any]:
    """The one ServiceEntry whose `hosts` or `addresses` hold the value."""
    (entry,) = [m for m in entries(rendered) if value in m["spec"].get(field, ())]
    return entry


def sidecar_hosts(rendered: cilium_policies.Rendered) -> list[str]:
    sidecar = rendered.manifests[-1]
    assert sidecar["kind"] == "Sidecar"
    hosts: list[str] = sidecar["spec"]["egress"][0]["hosts"]
    return hosts


class TestIstioExact:
    def test_every_object_s_metadata(self, policy: Policy) -> None:
        rendered = istio_objects.render_profile("shop", "stripe", policy)
        assert [m["kind"] for m in rendered.manifests] == [
            "ServiceEntry",
            "ServiceEntry",
            "Sidecar",
        ]
        for manifest in rendered.manifests:
            assert manifest["apiVersion"] == "networking.istio.io/v1"
            assert manifest["metadata"]["namespace"] == "shop"
            assert manifest["metadata"]["labels"] == generated_labels("profile")

    def test_a_host_without_ports_gets_tls_on_443(self, policy: Policy) -> None:
        rendered = istio_objects.render_profile("shop", "stripe", policy)
        assert entry_for(rendered, "hosts", "api.stripe.com")["spec"] == {
            "hosts": ["api.stripe.com"],
            "ports": [{"number": 443, "name": "tls-443", "protocol": "TLS"}],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            "exportTo": ["."],
        }

    def test_an_address_range_s_entry(self, policy: Policy) -> None:
        ranged = with_profile(policy, [{"cidr": "10.20.0.0/16", "ports": [5432, 443]}])
        rendered = istio_objects.render_profile("shop", "p", ranged)
        (entry,) = entries(rendered)
        assert entry is entry_for(rendered, "addresses", "10.20.0.0/16")
        assert entry["metadata"]["name"].startswith("egress-guard-profile-p")
        assert "10-20-0-0-16" in entry["metadata"]["name"]
        spec = dict(entry["spec"])
        ports = {port["number"]: port for port in spec.pop("ports")}
        assert sorted(ports) == [443, 5432]
        assert ports[5432] == {"number": 5432, "name": "tcp-5432", "protocol": "TCP"}
        assert spec == {
            "hosts": ["cidr-10-20-0-0-16.egress-guard.internal"],
            "addresses": ["10.20.0.0/16"],
            "location": "MESH_EXTERNAL",
            "resolution": "NONE",
            "exportTo": ["."],
        }
        assert "./cidr-10-20-0-0-16.egress-guard.internal" in sidecar_hosts(rendered)

    @pytest.mark.parametrize(
        ("cidr", "host"),
        [
            ("2001:DB8:ABCD::/48", "cidr-2001-db8-abcd-48"),
            ("::/0", "cidr-0"),
            ("fd00::/8", "cidr-fd00-8"),
        ],
    )
    def test_an_ipv6_range_s_host_name(self, policy: Policy, cidr: str, host: str) -> None:
        ranged = with_profile(policy, [{"cidr": cidr, "ports": [443]}])
        rendered = istio_objects.render_profile("shop", "p", ranged)
        entry = entry_for(rendered, "addresses", cidr)
        assert entry["spec"]["hosts"] == [f"{host}.egress-guard.internal"]
        assert f"./{host}.egress-guard.internal" in sidecar_hosts(rendered)

    def test_ports_other_than_443_are_tcp_and_named_ports_give_no_entry_port(
        self, policy: Policy
    ) -> None:
        hosts = with_profile(
            policy,
            [{"host": "db.example.com", "ports": [{"port": "postgres"}, 5432, 443]}],
        )
        rendered = istio_objects.render_profile("shop", "p", hosts)
        assert entry_for(rendered, "hosts", "db.example.com")["spec"]["ports"] == [
            {"number": 443, "name": "tls-443", "protocol": "TLS"},
            {"number": 5432, "name": "tcp-5432", "protocol": "TCP"},
        ]

    def test_wildcard_hosts_alone_still_get_their_entry(self, policy: Policy) -> None:
        wild = with_profile(policy, [{"host": "*.example.com", "ports": [443]}])
        rendered = istio_objects.render_profile("shop", "p", wild)
        (entry,) = entries(rendered)
        assert entry["spec"] == {
            "hosts": ["*.example.com"],
            "ports": [{"number": 443, "name": "tls-443", "protocol": "TLS"}],
            "location": "MESH_EXTERNAL",
            "resolution": "NONE",
            "exportTo": ["."],
        }
        assert "./*.example.com" in sidecar_hosts(rendered)

    def test_a_range_with_exceptions_is_said_and_the_next_still_rendered(
        self, policy: Policy
    ) -> None:
        ranges = with_profile(
            policy,
            [
                {"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12", "10.200.0.0/16"], "ports": [443]},
                {"cidr": "192.168.0.0/16", "ports": [443]},
            ],
        )
        rendered = istio_objects.render_profile("shop", "p", ranges)
        assert rendered.unrendered == (
            "10.0.0.0/8 except 10.96.0.0/12, 10.200.0.0/16, which a ServiceEntry cannot say",
        )
        assert [m["spec"]["addresses"] for m in entries(rendered)] == [["192.168.0.0/16"]]

    def test_the_proxy_s_services_only_when_the_profile_reaches_it(self, policy: Policy) -> None:
        assert PROXY_SERVICES not in sidecar_hosts(
            istio_objects.render_profile("shop", "stripe", policy)
        )  # a namespace injects all only when it says so
        routed = istio_objects.render_profile("shop", "stripe", policy, namespace_injects_all=True)
        assert sidecar_hosts(routed)[-1] == PROXY_SERVICES
        asked = istio_objects.render_profile("shop", "web-via-proxy", policy)
        assert sidecar_hosts(asked) == [
            "./*.shop.svc.cluster.local",
            "istio-system/*",
            PROXY_SERVICES,
        ]

    def test_the_proxy_s_services_under_the_cluster_domain(self, policy: Policy) -> None:
        domain = policy_with(policy, dns={"clusterDomain": "corp.example"})
        asked = istio_objects.render_profile("shop", "web-via-proxy", domain)
        assert sidecar_hosts(asked)[-1] == "egress-system/*.egress-system.svc.corp.example"

    def test_without_a_proxy_no_route_to_one(self, policy: Policy) -> None:
        unproxied = policy_with(
            policy, proxy=None, profiles={"p": {"allow": [{"host": "a.example.com"}]}}
        )
        rendered = istio_objects.render_profile("shop", "p", unproxied, namespace_injects_all=True)
        assert sidecar_hosts(rendered) == [
            "./*.shop.svc.cluster.local",
            "istio-system/*",
            "./a.example.com",
        ]


def test_a_label_of_cilium_alone_renders_cilium_objects_alone(meshed: Policy) -> None:
    ctx = context(meshed, "all", ["cilium"])
    assert ctx.backends == (Backend.CILIUM,)
    (intent,) = egress_intents("shop", ctx, meshed, "stripe")
    assert [(m["kind"], m["metadata"]["namespace"]) for m in intent.manifests] == [
        ("CiliumNetworkPolicy", "shop"),
        ("CiliumNetworkPolicy", "shop"),
    ]


class TestIstioEdges:
    def test_a_range_without_ports_gets_443_and_says_so(self, policy: Policy) -> None:
        ranged = with_profile(policy, [{"cidr": "10.30.0.0/16"}])
        rendered = istio_objects.render_profile("shop", "p", ranged)
        assert entry_for(rendered, "addresses", "10.30.0.0/16")["spec"]["ports"] == [
            {"number": 443, "name": "tcp-443", "protocol": "TCP"}
        ]
        assert rendered.unrendered == ("10.30.0.0/16 on any port, of which Istio holds 443 alone",)

    def test_a_range_s_udp_port_is_said_with_the_range(self, policy: Policy) -> None:
        ranged = with_profile(
            policy, [{"cidr": "10.30.0.0/16", "ports": [{"port": 53, "protocol": "UDP"}, 443]}]
        )
        rendered = istio_objects.render_profile("shop", "p", ranged)
        assert rendered.unrendered == (
            "UDP port 53 of 10.30.0.0/16, which a sidecar does not carry",
        )
        assert entry_for(rendered, "addresses", "10.30.0.0/16")["spec"]["ports"] == [
            {"number": 443, "name": "tcp-443", "protocol": "TCP"}
        ]

    def test_a_peer_before_a_host_does_not_stop_the_host_s_entry(self, policy: Policy) -> None:
        mixed = with_profile(
            policy,
            [
                {"namespaceSelector": {"kubernetes.io/metadata.name": "billing"}, "ports": [80]},
                {"host": "a.example.com", "ports": [443]},
            ],
        )
        rendered = istio_objects.render_profile("shop", "p", mixed)
        assert [e["spec"]["hosts"] for e in entries(rendered)] == [["a.example.com"]]
        assert sidecar_hosts(rendered) == [
            "./*.shop.svc.cluster.local",
            "istio-system/*",
            "./a.example.com",
            "billing/*.billing.svc.cluster.local",
        ]

    @pytest.mark.parametrize(
        ("what", "name"),
        [
            ("::1/128", "b.1-128-33f61ce4"),  # no leading dash
            ("*.example.com", "b.wildcard-example-com-3f3e3d72"),
            # cut at 54 characters, the dash it ends on dropped
            ("a" * 53 + ".b.example.com", "b." + "a" * 53 + "-9c6065f7"),
            ("a" * 50 + ".example.com", "b." + "a" * 50 + "-exa-c1c064f8"),
        ],
    )
    def test_an_entry_s_name(self, what: str, name: str) -> None:
        assert istio_objects.entry_name("b", what, [443]) == name


GROUPS = {"CiliumNetworkPolicy": "cilium.io", "Sidecar": "networking.istio.io"}
GROUPS["ServiceEntry"] = GROUPS["Sidecar"]


def backend_object(kind: str, spec: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUPS[kind]}/v2",
        "kind": kind,
        "metadata": {"name": "tenant", "namespace": "shop"},
        "spec": spec,
        **fields,
    }


def review(
    policy: Policy,
    obj: dict[str, Any],
    old: dict[str, Any] | None = None,
    mode: str = "enforce",
    backends: list[str] | None = None,
) -> Decision:
    """A tenant's CREATE (or UPDATE from `old`) of a Cilium or Istio object in `shop`."""
    labels = {policy.mode_label: mode, policy.inject_label: "networkpolicy"}
    if backends is not None:
        labels[policy.backends_label] = "_".join(backends)
    request = AdmissionRequest(
        uid="u",
        kind=obj["kind"],
        group=GROUPS[obj["kind"]],
        operation="CREATE" if old is None else "UPDATE",
        namespace="shop",
        object=obj,
        old_object=old,
        user="alice",
        groups=("system:authenticated",),
    )
    return review_network_policy(request, labels, policy, own_users("eg", "eg"))


def passes(decision: Decision) -> bool:
    """Allowed, saying nothing, under the namespace's mode (enforce)."""
    return (
        decision.verdict is Verdict.ALLOWED
        and not decision.findings
        and (decision.mode is Mode.ENFORCE)
    )


TO_WORLD = [{"toCIDR": ["0.0.0.0/0"]}]


class TestForeignBackendObjects:
    def test_a_cilium_policy_s_egress_rules_exactly(self, meshed: Policy) -> None:
        decision = review(meshed, backend_object("CiliumNetworkPolicy", {"egress": TO_WORLD}))
        assert decision.verdict is Verdict.DENIED
        assert decision.mode is Mode.ENFORCE
        assert decision.findings == (
            Finding(
                FOREIGN_WIDENS,
                Severity.VIOLATION,
                Subject("CiliumNetworkPolicy", "tenant"),
                "has egress rules, which Cilium adds to what the profiles allow (they are not "
                "checked against them)",
                "use egressDeny, or extend the profile in the policy file",
                (("kind", "CiliumNetworkPolicy"),),
                "use egressDeny, or extend the profile",
            ),
        )

    @pytest.mark.parametrize(
        ("mode", "verdict"), [("warn", Verdict.WARNED), ("audit", Verdict.AUDITED)]
    )
    def test_a_cilium_policy_under_a_milder_mode(
        self, meshed: Policy, mode: str, verdict: Verdict
    ) -> None:
        obj = backend_object("CiliumNetworkPolicy", {"egress": TO_WORLD})
        assert review(meshed, obj, mode=mode).verdict is verdict

    def test_rules_in_specs_widen_and_what_is_not_a_rule_is_skipped(self, meshed: Policy) -> None:
        obj = backend_object("CiliumNetworkPolicy", {}, specs=["junk", {"egress": TO_WORLD}])
        assert review(meshed, obj).verdict is Verdict.DENIED
        quiet = backend_object("CiliumNetworkPolicy", {}, specs=["junk", {"egressDeny": TO_WORLD}])
        assert passes(review(meshed, quiet))

    def test_rules_in_spec_count_beside_specs(self, meshed: Policy) -> None:
        obj = backend_object("CiliumNetworkPolicy", {"egress": TO_WORLD}, specs=[{}])
        assert review(meshed, obj).verdict is Verdict.DENIED

    def test_egress_deny_alone_opens_nothing(self, meshed: Policy) -> None:
        obj = backend_object("CiliumNetworkPolicy", {"egressDeny": TO_WORLD, "egress": []})
        assert passes(review(meshed, obj))

    @pytest.mark.parametrize(
        ("changed", "verdict"),
        [
            ({}, Verdict.ALLOWED),
            ({"egressDeny": TO_WORLD}, Verdict.ALLOWED),
            ({"endpointSelector": {"matchLabels": {"app": "web"}}}, Verdict.DENIED),
            ({"nodeSelector": {}}, Verdict.DENIED),
            (
                {"egress": [*TO_WORLD, {"toFQDNs": [{"matchName": "x.example.com"}]}]},
                Verdict.DENIED,
            ),
        ],
    )
    def test_an_update_may_keep_what_it_opened_not_open_more(
        self, meshed: Policy, changed: dict[str, Any], verdict: Verdict
    ) -> None:
        old = backend_object("CiliumNetworkPolicy", {"endpointSelector": {}, "egress": TO_WORLD})
        new = backend_object("CiliumNetworkPolicy", {**old["spec"], **changed})
        assert review(meshed, new, old).verdict is verdict

    def test_an_update_of_specs_is_read_too(self, meshed: Policy) -> None:
        old = backend_object("CiliumNetworkPolicy", {}, specs=[{"egress": TO_WORLD}])
        wider = backend_object("CiliumNetworkPolicy", {}, specs=[{"egress": TO_WORLD * 2}])
        assert review(meshed, old, old).verdict is Verdict.ALLOWED
        assert review(meshed, wider, old).verdict is Verdict.DENIED

    def test_a_sidecar_selecting_workloads_exactly(self, meshed: Policy) -> None:
        obj = backend_object("Sidecar", {"workloadSelector": {"labels": {"app": "web"}}})
        decision = review(meshed, obj)
        assert decision.verdict is Verdict.DENIED
        assert decision.mode is Mode.ENFORCE
        assert decision.findings == (
            Finding(
                FOREIGN_WIDENS,
                Severity.VIOLATION,
                Subject("Sidecar", "tenant"),
                "selects workloads, as the profiles' Sidecars do: Istio applies one of them, "
                "undefined which",
                "drop its workloadSelector (a namespace-wide Sidecar yields to the profiles')",
                (("kind", "Sidecar"),),
                "drop its workloadSelector",
            ),
        )

    def test_a_sidecar_where_istio_is_not_used_or_selecting_nothing(self, meshed: Policy) -> None:
        selecting = backend_object("Sidecar", {"workloadSelector": {"labels": {"app": "web"}}})
        assert passes(review(meshed, selecting, backends=["networkpolicy", "cilium"]))
        wide = backend_object("Sidecar", {"workloadSelector": {}, "egress": [{"hosts": ["*/*"]}]})
        assert passes(review(meshed, wide))

    @pytest.mark.parametrize(
        ("changed", "verdict"),
        [
            ({}, Verdict.ALLOWED),
            ({"ingress": []}, Verdict.ALLOWED),
            ({"workloadSelector": {"labels": {"app": "api"}}}, Verdict.DENIED),
            ({"egress": [{"hosts": ["*/*"]}]}, Verdict.DENIED),
            ({"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}, Verdict.DENIED),
        ],
    )
    def test_a_sidecar_update_may_keep_its_reach(
        self, meshed: Policy, changed: dict[str, Any], verdict: Verdict
    ) -> None:
        old = backend_object(
            "Sidecar",
            {
                "workloadSelector": {"labels": {"app": "web"}},
                "egress": [{"hosts": ["./*"]}],
                "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
            },
        )
        new = backend_object("Sidecar", {**old["spec"], **changed})
        assert review(meshed, new, old).verdict is verdict

    def test_an_entry_posing_as_services_exactly(self, meshed: Policy) -> None:
        hosts = ["z.shop.svc.cluster.local", "api.example.com", 7, "a.billing.svc.cluster.local"]
        decision = review(meshed, backend_object("ServiceEntry", {"hosts": hosts}))
        assert decision.verdict is Verdict.DENIED
        assert decision.mode is Mode.ENFORCE
        posing = ("a.billing.svc.cluster.local", "z.shop.svc.cluster.local")
        assert decision.findings == (
            Finding(
                FOREIGN_WIDENS,
                Severity.VIOLATION,
                Subject("ServiceEntry", "tenant"),
                "registers a.billing.svc.cluster.local, z.shop.svc.cluster.local: names of "
                "Services, which the profiles' Sidecars allow, for addresses of its own choosing",
                "name the host outside the cluster domain, or add it to a profile",
                (("kind", "ServiceEntry"), ("hosts", posing)),
                "name the host outside the cluster domain",
            ),
        )

    @pytest.mark.parametrize(
        "hosts",
        [
            ["api.example.com", "svc.cluster.local", "x.svc.cluster.localx"],
            "x.svc.cluster.local",  # not a list
            {"x.svc.cluster.local": "x"},
            None,
        ],
    )
    def test_an_entry_outside_the_cluster_domain_is_the_tenant_s(
        self, meshed: Policy, hosts: Any
    ) -> None:
        assert passes(review(meshed, backend_object("ServiceEntry", {"hosts": hosts})))

    def test_an_entry_under_another_cluster_domain(self, meshed: Policy) -> None:
        domain = policy_with(meshed, dns={"clusterDomain": "corp.example"})
        obj = backend_object("ServiceEntry", {"hosts": ["a.shop.svc.cluster.local"]})
        assert passes(review(domain, obj))
        posing = backend_object("ServiceEntry", {"hosts": ["a.shop.svc.corp.example"]})
        assert review(domain, posing).verdict is Verdict.DENIED

    def test_an_entry_where_istio_is_not_used(self, meshed: Policy) -> None:
        obj = backend_object("ServiceEntry", {"hosts": ["a.shop.svc.cluster.local"]})
        assert passes(review(meshed, obj, backends=["networkpolicy", "cilium"]))
