"""The NetworkPolicy renderer: table tests, names, hashes, drift, and the Kubernetes schema."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from builders import PROFILE, policy_with
from hypothesis import given
from hypothesis import strategies as st
from openapi_schema import assert_schema_valid, schema_errors

from webhook.config.policy_file import PolicyFileError, parse_policy
from webhook.core.network_policies import (
    DEFAULT_DENY_NAME,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAMESPACE_NAME_LABEL,
    is_generated,
    matches_rendered,
    profile_policy_name,
    render_default_deny,
    render_profile,
    replacement,
    unexpressible,
)
from webhook.core.policy import Policy
from webhook.core.wording import sentence

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HASH_KEY = "egress-guard.io/policy-hash"

ODD_PROFILE_NAMES = [
    "Web.API",
    "web_api",
    "web-api",
    "web.api",
    "WEB-API",
    "a" * 63,
    "a" * 62 + "b",
    "b" * 42,
    "b" * 43,
    "dots.in.the.middle",
    "under_score",
    "MixedCase_and.dots-9",
    "svc-0123abcd",
    "svc-0123abcE",
    "9lives",
    "Z",
    "z",
    "a_._b",
    "x" + "-" * 40 + "y",
]


def odd_policy(policy: Policy, extra: list[str] | None = None) -> Policy:
    """The example policy plus a profile for every odd name, each allowing something different."""
    profiles: dict[str, Any] = {
        name: {"allow": [{"cidr": f"10.{index}.0.0/16", "ports": [443]}]}
        for index, name in enumerate([*ODD_PROFILE_NAMES, *(extra or [])])
    }
    profiles["proxied.Thing"] = {"proxy": True}
    profiles["host_only"] = {"allow": [{"host": "api.example.com"}]}
    return policy_with(policy, profiles=profiles)


class TestDefaultDeny:
    def test_denies_all_egress_but_dns_over_udp_and_tcp(self, policy: Policy) -> None:
        manifest = render_default_deny("payments", policy)
        assert manifest["metadata"]["name"] == DEFAULT_DENY_NAME
        assert manifest["metadata"]["namespace"] == "payments"
        assert manifest["spec"] == {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}
                            },
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        }

    def test_every_dns_port_is_allowed_on_both_protocols(self, policy: Policy) -> None:
        custom = policy_with(
            policy,
            dns={"namespace": "dns-system", "podSelector": {"app": "coredns"}, "ports": [53, 5353]},
        )
        (rule,) = render_default_deny("payments", custom)["spec"]["egress"]
        assert rule["ports"] == [
            {"protocol": "UDP", "port": 53},
            {"protocol": "TCP", "port": 53},
            {"protocol": "UDP", "port": 5353},
            {"protocol": "TCP", "port": 5353},
        ]
        assert rule["to"][0]["namespaceSelector"]["matchLabels"] == {
            NAMESPACE_NAME_LABEL: "dns-system"
        }

    def test_an_empty_dns_pod_selector_is_rendered_as_stored(self, policy: Policy) -> None:
        custom = policy_with(policy, dns={"namespace": "kube-system", "podSelector": {}})
        (rule,) = render_default_deny("payments", custom)["spec"]["egress"]
        assert rule["to"][0]["podSelector"] == {}

    def test_is_labelled_and_annotated_as_generated(self, policy: Policy) -> None:
        metadata = render_default_deny("payments", policy)["metadata"]
        assert metadata["labels"][MANAGED_BY_LABEL] == MANAGED_BY
        assert metadata["labels"]["egress-guard.io/generated"] == "default-deny"
        assert re.fullmatch(r"[0-9a-f]{16}", metadata["annotations"][HASH_KEY])

    def test_keys_follow_the_label_prefix(self, policy: Policy) -> None:
        custom = policy_with(policy, labelPrefix="egress.example.com")
        metadata = render_default_deny("payments", custom)["metadata"]
        assert "egress.example.com/policy-hash" in metadata["annotations"]
        assert metadata["labels"]["egress.example.com/generated"] == "default-deny"


DNS_PODS = {
    "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}


@pytest.mark.parametrize(
    ("dns", "expected_to", "expected_ports"),
    [
        pytest.param({}, [DNS_PODS], [53], id="pods-only"),
        pytest.param(
            {"cidrs": ["169.254.20.10/32"]},
            [DNS_PODS, {"ipBlock": {"cidr": "169.254.20.10/32"}}],
            [53],
            id="node-local-dns-cache",
        ),
        pytest.param(
            {"cidrs": ["169.254.20.10", "fd00::10"]},
            [
                DNS_PODS,
                {"ipBlock": {"cidr": "169.254.20.10/32"}},
                {"ipBlock": {"cidr": "fd00::10/128"}},
            ],
            [53],
            id="bare-addresses-are-single-hosts",
        ),
        pytest.param(
            {"cidrs": ["10.0.0.0/24", "10.0.0.0/24"], "ports": [53, 5353]},
            [DNS_PODS, {"ipBlock": {"cidr": "10.0.0.0/24"}}],
            [53, 5353],
            id="every-port-once-per-block",
        ),
    ],
)
def test_dns_cidrs_are_allowed_as_ip_blocks_on_the_dns_ports(
    policy: Policy, dns: dict[str, Any], expected_to: list[Any], expected_ports: list[int]
) -> None:
    custom = policy_with(policy, dns=dns)
    manifest = render_default_deny("payments", custom)
    (rule,) = manifest["spec"]["egress"]
    assert rule["to"] == expected_to
    assert rule["ports"] == [
        {"protocol": protocol, "port": port}
        for port in expected_ports
        for protocol in ("UDP", "TCP")
    ]
    assert_schema_valid(manifest)


def test_dns_cidrs_change_the_default_deny_hash(policy: Policy) -> None:
    plain = render_default_deny("payments", policy)["metadata"]["annotations"][HASH_KEY]
    custom = policy_with(policy, dns={"cidrs": ["169.254.20.10/32"]})
    local = render_default_deny("payments", custom)["metadata"]["annotations"][HASH_KEY]
    assert plain != local


@pytest.mark.parametrize(
    "cidr", ["169.254.20.10/33", "10.0.0.1/24", "kube-dns", "", "169.254.20.10/32 "]
)
def test_a_bad_dns_cidr_is_refused_naming_the_field(cidr: str) -> None:
    with pytest.raises(PolicyFileError, match=r"dns\.cidrs"):
        parse_policy(yaml.safe_dump({"dns": {"cidrs": [cidr]}}), "policy.yaml")


@pytest.mark.parametrize(
    ("profile", "injects_all", "expected_egress"),
    [
        pytest.param(
            "stripe",
            False,
            [
                {
                    "to": [{"ipBlock": {"cidr": "34.210.129.0/24"}}],
                    "ports": [{"protocol": "TCP", "port": 443}],
                }
            ],
            id="cidr-and-port-host-left-out",
        ),
        pytest.param(
            "internal",
            False,
            [
                {
                    "to": [
                        {
                            "namespaceSelector": {"matchLabels": {"team": "payments"}},
                            "podSelector": {"matchLabels": {"app": "ledger"}},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": 8080}],
                }
            ],
            id="in-cluster-peers",
        ),
        pytest.param(
            "web-via-proxy",
            False,
            [
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {NAMESPACE_NAME_LABEL: "egress-system"}
                            },
                            "podSelector": {"matchLabels": {"app": "egress-proxy"}},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": 3128}],
                }
            ],
            id="proxy-profile-reaches-only-the-proxy",
        ),
        pytest.param("none", False, None, id="dns-only-profile-has-no-egress-rules"),
        pytest.param("none", True, None, id="inject-all-gives-no-route-to-a-profile-without-hosts"),
    ],
)
def test_profile_policies(
    profile: str, injects_all: bool, expected_egress: list[Any] | None, policy: Policy
) -> None:
    manifest = render_profile("payments", profile, policy, namespace_injects_all=injects_all)
    spec = manifest["spec"]
    assert spec["podSelector"] == {"matchLabels": {PROFILE: profile}}
    assert spec["policyTypes"] == ["Egress"]
    assert spec.get("egress") == expected_egress
    assert manifest["metadata"]["name"] == f"egress-guard-profile-{profile}"
    assert manifest["metadata"]["labels"][PROFILE] == profile
    assert manifest["metadata"]["labels"]["egress-guard.io/generated"] == "profile"
    assert_schema_valid(manifest)


@pytest.mark.parametrize(
    ("destination", "expected_rule"),
    [
        pytest.param(
            {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.9.0.0/16"], "ports": [443]},
            {
                "to": [
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.9.0.0/16"]}}
                ],
                "ports": [{"protocol": "TCP", "port": 443}],
            },
            id="cidr-with-except",
        ),
        pytest.param(
            {"cidr": "2001:db8::/32", "ports": [{"port": 53, "protocol": "UDP"}]},
            {
                "to": [{"ipBlock": {"cidr": "2001:db8::/32"}}],
                "ports": [{"protocol": "UDP", "port": 53}],
            },
            id="ipv6-udp",
        ),
        pytest.param(
            {"cidr": "0.0.0.0/0", "ports": [{"port": 32000, "endPort": 32768}]},
            {
                "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                "ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}],
            },
            id="port-range",
        ),
        pytest.param(
            {"cidr": "192.0.2.0/24"},
            {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]},
            id="every-port",
        ),
        pytest.param(
            {"podSelector": {"app": "db"}, "ports": [{"port": "postgres"}]},
            {
                "to": [{"podSelector": {"matchLabels": {"app": "db"}}}],
                "ports": [{"protocol": "TCP", "port": "postgres"}],
            },
            id="same-namespace-pods-named-port",
        ),
        pytest.param(
            {"namespaceSelector": {}, "podSelector": {"app": "metrics"}},
            {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "metrics"}}}]},
            id="any-namespace",
        ),
        pytest.param(
            {"namespaceSelector": {"team": "data"}, "ports": [{"port": 9092, "protocol": "SCTP"}]},
            {
                "to": [{"namespaceSelector": {"matchLabels": {"team": "data"}}}],
                "ports": [{"protocol": "SCTP", "port": 9092}],
            },
            id="whole-namespaces-sctp",
        ),
    ],
)
def test_destinations_become_rules(
    destination: dict[str, Any], expected_rule: dict[str, Any], policy: Policy
) -> None:
    custom = policy_with(policy, profiles={"p": {"allow": [destination]}})
    manifest = render_profile("payments", "p", custom)
    assert manifest["spec"]["egress"] == [expected_rule]
    assert_schema_valid(manifest)


class TestHostDestinations:
    def test_are_reported_with_what_to_do(self, policy: Policy) -> None:
        (finding,) = unexpressible("stripe", policy, namespace_injects_all=False)
        assert finding.check == "host-names"
        assert finding.get("host") == "api.stripe.com"
        assert "proxy" in finding.hint
        assert "api.stripe.com" in sentence(finding)

    def test_are_not_reported_where_the_pods_reach_the_proxy(self, policy: Policy) -> None:
        assert unexpressible("stripe", policy, namespace_injects_all=True) == ()

    def test_inject_all_without_a_proxy_section_still_reports_them(self, policy: Policy) -> None:
        no_proxy = policy_with(policy, proxy=None, profiles={"p": {"allow": [{"host": "a.io"}]}})
        (finding,) = unexpressible("p", no_proxy, namespace_injects_all=True)
        assert finding.get("host") == "a.io"
        manifest = render_profile("payments", "p", no_proxy, namespace_injects_all=True)
        assert "egress" not in manifest["spec"]


class TestNames:
    @pytest.mark.parametrize(
        ("profile", "name"),
        [
            ("stripe", "egress-guard-profile-stripe"),
            ("web-via-proxy", "egress-guard-profile-web-via-proxy"),
            ("b" * 42, "egress-guard-profile-" + "b" * 42),
        ],
    )
    def test_short_dns_label_profiles_keep_their_name(self, profile: str, name: str) -> None:
        assert profile_policy_name(profile) == name

    @pytest.mark.parametrize("profile", ODD_PROFILE_NAMES)
    def test_odd_profile_names_give_dns_1123_labels(self, profile: str) -> None:
        name = profile_policy_name(profile)
        assert len(name) <= 63
        assert DNS1123_LABEL.match(name), name
        assert name.startswith("egress-guard-profile-")

    def test_odd_names_keep_a_readable_slug(self) -> None:
        assert re.fullmatch(
            r"egress-guard-profile-web-api-[0-9a-f]{8}", profile_policy_name("Web.API")
        )

    def test_odd_names_never_collide(self) -> None:
        names = {profile_policy_name(profile) for profile in ODD_PROFILE_NAMES}
        assert len(names) == len(ODD_PROFILE_NAMES)

    def test_a_profile_named_like_another_ones_digest_name_does_not_take_it(self) -> None:
        taken = profile_policy_name("Web.API").removeprefix("egress-guard-profile-")
        assert profile_policy_name(taken) != profile_policy_name("Web.API")


@given(
    st.lists(
        st.from_regex(r"\A[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z"),
        min_size=2,
        max_size=20,
        unique=True,
    )
)
def test_any_valid_profile_names_give_distinct_valid_names(profiles: list[str]) -> None:
    """A module-level function, not a method: hypothesis refuses a test whose `self` differs
    between runs, as it does when the same process runs the suite again (mutation testing)."""
    names = [profile_policy_name(profile) for profile in profiles]
    assert all(len(name) <= 63 and DNS1123_LABEL.match(name) for name in names)
    assert len(set(names)) == len(names)


class TestSchemaSweep:
    def test_every_profile_of_an_odd_policy_file_renders_a_valid_policy(
        self, policy: Policy
    ) -> None:
        odd = odd_policy(policy)
        names: set[str] = set()
        for profile in odd.profile_names:
            for injects_all in (False, True):
                manifest = render_profile("team-a", profile, odd, namespace_injects_all=injects_all)
                assert_schema_valid(manifest)
                assert manifest["spec"]["podSelector"] == {"matchLabels": {PROFILE: profile}}
            names.add(manifest["metadata"]["name"])
        assert len(names) == len(odd.profile_names)
        assert DEFAULT_DENY_NAME not in names
        assert_schema_valid(render_default_deny("team-a", odd))

    @pytest.mark.parametrize("namespace", ["payments", "a", "n" * 63])
    def test_example_policy_renders_valid_policies_in_any_namespace(
        self, namespace: str, policy: Policy
    ) -> None:
        assert_schema_valid(render_default_deny(namespace, policy))
        for profile in policy.profile_names:
            assert_schema_valid(render_profile(namespace, profile, policy))

    def test_the_validator_does_reject_a_broken_policy(self, policy: Policy) -> None:
        broken = render_default_deny("payments", policy)
        broken["spec"] = {**broken["spec"], "egres": []}
        assert schema_errors(broken) is not None


class TestHashes:
    def test_same_content_same_hash_whatever_the_namespace(self, policy: Policy) -> None:
        first = render_profile("a", "stripe", policy)["metadata"]["annotations"][HASH_KEY]
        second = render_profile("b", "stripe", policy)["metadata"]["annotations"][HASH_KEY]
        assert first == second

    def test_a_changed_profile_changes_the_hash(self, policy: Policy) -> None:
        before = render_profile("a", "stripe", policy)["metadata"]["annotations"][HASH_KEY]
        changed = policy_with(
            policy, profiles={"stripe": {"allow": [{"cidr": "34.210.130.0/24", "ports": [443]}]}}
        )
        after = render_profile("a", "stripe", changed)["metadata"]["annotations"][HASH_KEY]
        assert before != after

    def test_a_changed_dns_block_changes_the_default_deny_hash(self, policy: Policy) -> None:
        before = render_default_deny("a", policy)["metadata"]["annotations"][HASH_KEY]
        changed = policy_with(policy, dns={"namespace": "kube-system", "ports": [53, 5353]})
        assert render_default_deny("a", changed)["metadata"]["annotations"][HASH_KEY] != before


class TestDrift:
    def live(self, manifest: dict[str, Any], **metadata: Any) -> dict[str, Any]:
        """A copy as read back: server-set metadata added."""
        meta = {**manifest["metadata"], "uid": "u-1", "resourceVersion": "41", **metadata}
        return {**manifest, "metadata": meta}

    def test_a_copy_read_back_is_in_place(self, policy: Policy) -> None:
        desired = render_default_deny("payments", policy)
        assert matches_rendered(self.live(desired), desired)

    def test_labels_and_annotations_others_add_are_not_drift(self, policy: Policy) -> None:
        desired = render_default_deny("payments", policy)
        live = self.live(
            desired,
            labels={**desired["metadata"]["labels"], "team": "x"},
            annotations={**desired["metadata"]["annotations"], "note": "y"},
        )
        assert matches_rendered(live, desired)

    @pytest.mark.parametrize(
        "edit",
        [
            pytest.param(lambda m: m["spec"].update(egress=[]), id="spec-edited"),
            pytest.param(lambda m: m["metadata"]["annotations"].update({HASH_KEY: "0"}), id="hash"),
            pytest.param(lambda m: m["metadata"]["labels"].pop(MANAGED_BY_LABEL), id="label"),
        ],
    )
    def test_edits_are_drift(self, edit: Any, policy: Policy) -> None:
        desired = render_default_deny("payments", policy)
        live = self.live(desired)
        live["spec"] = dict(live["spec"])
        live["metadata"]["labels"] = dict(live["metadata"]["labels"])
        live["metadata"]["annotations"] = dict(live["metadata"]["annotations"])
        edit(live)
        assert not matches_rendered(live, desired)

    def test_replacement_names_the_version_read_and_keeps_foreign_metadata(
        self, policy: Policy
    ) -> None:
        desired = render_profile("payments", "stripe", policy)
        live = self.live(
            desired,
            labels={"team": "x", MANAGED_BY_LABEL: MANAGED_BY},
            annotations={HASH_KEY: "stale", "note": "y"},
        )
        live["spec"] = {"podSelector": {}, "policyTypes": ["Egress"]}
        body = replacement(live, desired)
        assert body["metadata"]["resourceVersion"] == "41"
        assert body["metadata"]["labels"]["team"] == "x"
        assert body["metadata"]["annotations"]["note"] == "y"
        assert (
            body["metadata"]["annotations"][HASH_KEY]
            == desired["metadata"]["annotations"][HASH_KEY]
        )
        assert body["spec"] == desired["spec"]
        assert matches_rendered(body, desired)
        assert "resourceVersion" not in desired["metadata"]  # the rendering is not touched

    def test_only_labelled_objects_count_as_generated(self, policy: Policy) -> None:
        assert is_generated(render_default_deny("payments", policy))
        assert not is_generated({"metadata": {"name": "hand-made"}})
        assert not is_generated({"metadata": {"labels": {MANAGED_BY_LABEL: "helm"}}})


def test_under_inject_all_a_profile_with_host_names_reaches_the_proxy(policy: Policy) -> None:
    """Host names are reached through the proxy, where the namespace injects its variables."""
    spec = render_profile("payments", "stripe", policy, namespace_injects_all=True)["spec"]
    proxy_rules = [r for r in spec["egress"] if r["ports"] == [{"protocol": "TCP", "port": 3128}]]
    assert len(proxy_rules) == 1
    plain = render_profile("payments", "stripe", policy, namespace_injects_all=False)["spec"]
    assert plain["egress"] == [r for r in spec["egress"] if r not in proxy_rules]
