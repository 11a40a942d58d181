"""The policy file's limits at their edges: what Kubernetes accepts is accepted, one past is not.

The validators are pydantic-decorated, which mutation testing skips, so each bound is pinned here
from both sides: a label value of 63 characters and of 64, ports 0, 1, 65535 and 65536, selector
keys with and without a DNS prefix.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from webhook.core.policy import Policy


def policy_of(document: dict[str, Any]) -> Policy:
    return Policy.model_validate(document)


def refused(document: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Policy.model_validate(document)
    return str(caught.value)


def peer(**selectors: dict[str, str]) -> dict[str, Any]:
    return {"profiles": {"p": {"allow": [dict(selectors)]}}}


class TestLabelValues:
    """Profile names and selector values are label values: at most 63 characters."""

    def test_a_profile_name_of_63_characters_is_accepted(self) -> None:
        name = "a" * 63
        assert name in policy_of({"profiles": {name: {}}}).profiles

    def test_a_profile_name_of_64_characters_is_refused_saying_the_limit(self) -> None:
        text = refused({"profiles": {"a" * 64: {}}})
        assert (
            "not a valid Kubernetes label value (at most 63 characters: letters, digits, " in text
        )
        assert "'-', '_', '.', starting and ending with a letter or digit)" in text

    def test_a_selector_value_of_63_characters_is_accepted(self) -> None:
        policy = policy_of(peer(podSelector={"app": "v" * 63}))
        assert policy.profiles["p"].allow[0].pod_selector == {"app": "v" * 63}

    def test_a_selector_value_of_64_characters_is_refused_naming_its_key(self) -> None:
        text = refused(peer(podSelector={"app": "v" * 64}))
        assert "label app" in text

    @pytest.mark.parametrize("value", ["-x", "x-", "a b", "ü"])
    def test_a_selector_value_outside_the_grammar_is_refused(self, value: str) -> None:
        assert "label value" in refused(peer(podSelector={"app": value}))

    def test_an_empty_selector_value_is_a_valid_label_value(self) -> None:
        policy = policy_of(peer(podSelector={"app": ""}))
        assert policy.profiles["p"].allow[0].pod_selector == {"app": ""}


class TestLabelKeys:
    """Selector keys are qualified names: an optional DNS-subdomain prefix, then a name of at
    most 63 characters."""

    @pytest.mark.parametrize(
        "key",
        [
            pytest.param("app", id="plain"),
            pytest.param("app.kubernetes.io/name", id="dns-prefix"),
            pytest.param("example.com/" + "n" * 63, id="name-of-63"),
            pytest.param("a" * 253 + "/name", id="prefix-of-253"),
        ],
    )
    def test_valid_keys_are_accepted(self, key: str) -> None:
        policy = policy_of(peer(namespaceSelector={key: "v"}))
        assert policy.profiles["p"].allow[0].namespace_selector == {key: "v"}

    @pytest.mark.parametrize(
        ("key", "says"),
        [
            pytest.param("App_Kubernetes.io/name", "invalid prefix", id="prefix-not-dns"),
            pytest.param("a" * 254 + "/name", "invalid prefix", id="prefix-of-254"),
            pytest.param("example.com/" + "n" * 64, "not a valid Kubernetes label name", id="64"),
            pytest.param("n" * 64, "not a valid Kubernetes label name", id="plain-64"),
            pytest.param("example.com/-name", "not a valid Kubernetes label name", id="name-dash"),
            pytest.param("a/b/c", "invalid prefix", id="two-slashes"),
        ],
    )
    def test_invalid_keys_are_refused_naming_the_key(self, key: str, says: str) -> None:
        text = refused(peer(namespaceSelector={key: "v"}))
        assert says in text
        assert repr(key)[:40] in text

    def test_the_dns_selector_is_checked_too(self) -> None:
        assert "invalid prefix" in refused({"dns": {"podSelector": {"Bad_Prefix/app": "dns"}}})


class TestPorts:
    @pytest.mark.parametrize("port", [1, 443, 65535])
    def test_ports_1_to_65535_are_accepted(self, port: int) -> None:
        policy = policy_of(
            {"profiles": {"p": {"allow": [{"cidr": "10.0.0.0/8", "ports": [port]}]}}}
        )
        assert policy.profiles["p"].allow[0].ports[0].port == port

    @pytest.mark.parametrize("port", [0, 65536, -1])
    def test_ports_outside_1_to_65535_are_refused_saying_the_range(self, port: int) -> None:
        text = refused({"profiles": {"p": {"allow": [{"cidr": "10.0.0.0/8", "ports": [port]}]}}})
        assert f"port {port} is outside 1-65535" in text

    @pytest.mark.parametrize("port", [1, 65535])
    def test_dns_and_proxy_ports_accept_the_edges(self, port: int) -> None:
        policy = policy_of(
            {
                "dns": {"ports": [port]},
                "proxy": {
                    "url": "http://p:3128",
                    "namespace": "p",
                    "podSelector": {},
                    "port": port,
                },
            }
        )
        assert policy.dns.ports == [port]
        assert policy.proxy is not None
        assert policy.proxy.port == port

    @pytest.mark.parametrize("port", [0, 65536])
    def test_dns_and_proxy_ports_refuse_past_the_edges(self, port: int) -> None:
        assert "outside 1-65535" in refused({"dns": {"ports": [port]}})
        proxy = {"url": "http://p:3128", "namespace": "p", "podSelector": {}, "port": port}
        assert "outside 1-65535" in refused({"proxy": proxy})

    def test_an_end_port_may_equal_the_port_and_65535(self) -> None:
        ports = [{"port": 1000, "endPort": 1000}, {"port": 1000, "endPort": 65535}]
        policy = policy_of({"profiles": {"p": {"allow": [{"cidr": "10.0.0.0/8", "ports": ports}]}}})
        assert [p.end_port for p in policy.profiles["p"].allow[0].ports] == [1000, 65535]

    @pytest.mark.parametrize("end", [999, 65536])
    def test_an_end_port_before_the_port_or_past_65535_is_refused(self, end: int) -> None:
        ports = [{"port": 1000, "endPort": end}]
        text = refused({"profiles": {"p": {"allow": [{"cidr": "10.0.0.0/8", "ports": ports}]}}})
        assert f"endPort {end}" in text


class TestNamespaceNames:
    def test_a_namespace_name_of_63_characters_is_accepted(self) -> None:
        assert policy_of({"exemptNamespaces": ["n" * 63]}).exempt == frozenset({"n" * 63})

    def test_a_namespace_name_of_64_characters_is_refused(self) -> None:
        assert "not a valid namespace name" in refused({"exemptNamespaces": ["n" * 64]})


class TestNamespaceTable:
    """The `namespaces` table: the labels assumed where no cluster is reachable."""

    def test_an_entry_gives_the_labels_it_sets_and_only_those(self) -> None:
        policy = policy_of(
            {
                "namespaces": {
                    "both": {"mode": "warn", "inject": "proxy"},
                    "mode-only": {"mode": "enforce"},
                    "inject-only": {"inject": "all"},
                    "neither": {},
                }
            }
        )
        assert policy.static_namespace_labels("both") == {
            "egress-guard.io/mode": "warn",
            "egress-guard.io/inject": "proxy",
        }
        assert policy.static_namespace_labels("mode-only") == {"egress-guard.io/mode": "enforce"}
        assert policy.static_namespace_labels("inject-only") == {"egress-guard.io/inject": "all"}
        assert policy.static_namespace_labels("neither") == {}
        assert policy.static_namespace_labels("absent") is None

    def test_the_labels_follow_the_label_prefix(self) -> None:
        policy = policy_of(
            {"labelPrefix": "egress.example.com", "namespaces": {"a": {"mode": "audit"}}}
        )
        assert policy.static_namespace_labels("a") == {"egress.example.com/mode": "audit"}


class TestCopies:
    def test_a_deep_copy_shares_no_profile_with_the_original(self) -> None:
        policy = policy_of({"profiles": {"p": {"allow": [{"cidr": "10.0.0.0/8"}]}}})
        copy = policy.model_copy(deep=True)
        assert copy.profiles == policy.profiles
        assert copy.profiles["p"] is not policy.profiles["p"]

    def test_a_plain_copy_is_shallow_as_in_pydantic(self) -> None:
        policy = policy_of({"profiles": {"p": {}}})
        assert policy.model_copy().profiles["p"] is policy.profiles["p"]

    def test_an_update_through_a_copy_is_applied(self) -> None:
        policy = policy_of({"labelPrefix": "a.example"})
        assert policy.model_copy(update={"label_prefix": "b.example"}).profile_label == (
            "b.example/profile"
        )
