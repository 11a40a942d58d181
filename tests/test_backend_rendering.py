"""Profiles as Cilium and Istio objects: host names, ranges and peers, valid against the real
CRDs (../shared/corpus/crds, when present), and what a backend cannot say, said."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from builders import policy_with
from click.testing import CliRunner

from webhook.cli.main import main
from webhook.core import cilium_policies, istio_objects
from webhook.core.backends import Backend, object_ref
from webhook.core.egress_objects import egress_intents
from webhook.core.namespace import namespace_context
from webhook.core.policy import Inject, Policy

CRDS = Path(__file__).resolve().parents[2] / "shared/corpus/crds"
PROFILE: dict[str, Any] = {
    "allow": [
        {"host": "api.stripe.com", "ports": [443]},
        {"host": "*.s3.amazonaws.com", "ports": [443]},
        {"cidr": "34.210.129.0/24", "ports": [443]},
        {"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"], "ports": [5432]},
        {"podSelector": {"app": "ledger"}, "ports": [8080]},
        {
            "namespaceSelector": {"kubernetes.io/metadata.name": "billing"},
            "podSelector": {"app": "invoices"},
            "ports": [9000],
        },
        {"namespaceSelector": {"team": "payments"}, "ports": [8443]},
    ]
}


@pytest.fixture
def mixed(policy: Policy) -> Policy:
    profiles = {**policy.model_dump(by_alias=True)["profiles"], "mixed": PROFILE}
    return policy_with(policy, profiles=profiles)


def rendered(
    namespace: str, policy: Policy, backends: tuple[Backend, ...], inject: Inject = Inject.ALL
) -> list[dict[str, Any]]:
    """Every object admission would ensure for each profile of the policy, once each."""
    labels = {policy.mode_label: "enforce", policy.inject_label: inject.value}
    context = replace(namespace_context(namespace, labels, policy), backends=backends)
    found: dict[str, dict[str, Any]] = {}
    for profile in policy.profile_names:
        for intent in egress_intents(namespace, context, policy, profile):
            for manifest in intent.manifests:
                found.setdefault(object_ref(manifest), dict(manifest))
    return list(found.values())


def validate(manifest: dict[str, Any], schema: dict[str, Any]) -> None:
    """Against the CRD's openAPIV3Schema. The schema itself is not checked: Cilium's holds Go
    regular expressions (`\\PC`) that Python's `re` cannot compile, in fields never rendered."""
    jsonschema.Draft7Validator(schema).validate(manifest)


def crd_schema(file: str, name: str, version: str) -> dict[str, Any]:
    if not CRDS.exists():
        pytest.skip("../shared/corpus is not here")
    for document in yaml.safe_load_all((CRDS / file).read_text()):
        if document and document["metadata"]["name"] == name:
            (served,) = [v for v in document["spec"]["versions"] if v["name"] == version]
            schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"{name} not in {file}")


class TestCilium:
    def test_hosts_ranges_and_peers(self, mixed: Policy) -> None:
        rendered = cilium_policies.render_profile("payments", "mixed", mixed)
        (manifest,) = rendered.manifests
        spec = manifest["spec"]
        assert spec["endpointSelector"] == {"matchLabels": {"k8s:egress-guard.io/profile": "mixed"}}
        egress = spec["egress"]
        dns = egress[0]
        assert dns["toPorts"][0]["rules"] == {"dns": [{"matchPattern": "*"}]}
        assert dns["toEndpoints"] == [
            {
                "matchLabels": {
                    "k8s:io.kubernetes.pod.namespace": "kube-system",
                    "k8s:k8s-app": "kube-dns",
                }
            }
        ]
        fqdns = [rule["toFQDNs"] for rule in egress if "toFQDNs" in rule]
        assert fqdns == [
            [{"matchName": "api.stripe.com"}],
            [{"matchPattern": "*.s3.amazonaws.com"}],
        ]
        cidrs = [rule["toCIDRSet"] for rule in egress if "toCIDRSet" in rule]
        assert cidrs == [
            [{"cidr": "34.210.129.0/24"}],
            [{"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}],
        ]
        peers = [
            rule["toEndpoints"][0]["matchLabels"] for rule in egress[1:] if "toEndpoints" in rule
        ]
        assert peers == [
            {"k8s:app": "ledger"},
            {"k8s:app": "invoices", "k8s:io.kubernetes.pod.namespace": "billing"},
        ]
        (why,) = rendered.unrendered
        assert "namespaces team=payments" in why and "cannot select by label" in why

    def test_the_dns_rule_only_where_names_are_learned(self, policy: Policy) -> None:
        (proxied,) = cilium_policies.render_profile("payments", "web-via-proxy", policy).manifests
        assert [list(rule) for rule in proxied["spec"]["egress"]] == [["toEndpoints", "toPorts"]]
        assert "rules" not in proxied["spec"]["egress"][0]["toPorts"][0]
        (none,) = cilium_policies.render_profile("payments", "none", policy).manifests
        assert none["spec"]["egress"] == cilium_policies.dns_rules(policy)  # DNS only

    def test_valid_against_the_crd(self, mixed: Policy) -> None:
        schema = crd_schema(
            "cilium-ciliumnetworkpolicies.yaml", "ciliumnetworkpolicies.cilium.io", "v2"
        )
        manifests = rendered("payments", mixed, (Backend.CILIUM,), inject=Inject.ALL)
        assert len(manifests) == 1 + len(mixed.profiles)
        for manifest in manifests:
            validate(manifest, schema)


class TestIstio:
    def test_entries_and_the_sidecar(self, mixed: Policy) -> None:
        rendered = istio_objects.render_profile("payments", "mixed", mixed)
        *entries, sidecar = rendered.manifests
        assert [m["kind"] for m in entries] == ["ServiceEntry"] * 3
        by_host = {m["spec"]["hosts"][0]: m for m in entries}
        exact = by_host["api.stripe.com"]
        wildcard = by_host["*.s3.amazonaws.com"]
        block = by_host["cidr-34-210-129-0-24.egress-guard.internal"]
        assert exact["metadata"]["name"].startswith("egress-guard-profile-mixed.api-stripe-com-")
        assert wildcard["metadata"]["name"].startswith(
            "egress-guard-profile-mixed.wildcard-s3-amazonaws-com-"
        )
        assert (exact["spec"]["resolution"], wildcard["spec"]["resolution"]) == ("DNS", "NONE")
        assert exact["spec"]["ports"] == [{"number": 443, "name": "tls-443", "protocol": "TLS"}]
        assert exact["spec"]["exportTo"] == ["."] and exact["spec"]["location"] == "MESH_EXTERNAL"
        assert block["spec"]["addresses"] == ["34.210.129.0/24"]
        # matched by address: a server name would never be the invented host
        assert block["spec"]["ports"] == [{"number": 443, "name": "tcp-443", "protocol": "TCP"}]
        assert sidecar["spec"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
        assert sidecar["spec"]["workloadSelector"] == {
            "labels": {"egress-guard.io/profile": "mixed"}
        }
        hosts = sidecar["spec"]["egress"][0]["hosts"]
        assert hosts[:2] == ["./*.payments.svc.cluster.local", "istio-system/*"]
        assert "billing/*.billing.svc.cluster.local" in hosts  # a peer namespace named
        assert {"./api.stripe.com", "./*.s3.amazonaws.com"} <= set(hosts)
        assert any("10.0.0.0/8 except 10.96.0.0/12" in why for why in rendered.unrendered)
        assert not any(
            "10.0.0.0/8" in str(m["spec"].get("addresses")) for m in rendered.manifests
        )  # never more than declared

    def test_a_profile_without_hosts_gets_only_a_sidecar(self, policy: Policy) -> None:
        (sidecar,) = istio_objects.render_profile("payments", "none", policy).manifests
        assert sidecar["kind"] == "Sidecar"
        assert sidecar["spec"]["egress"] == [
            {"hosts": ["./*.payments.svc.cluster.local", "istio-system/*"]}
        ]

    def test_a_sidecar_takes_in_no_other_profile_s_entries(self, mixed: Policy) -> None:
        """`./*` would name every host registered in the namespace, other profiles' entries
        (and a tenant's) among them: the Sidecar names the namespace's Services instead."""
        stripe = istio_objects.render_profile("payments", "stripe", mixed).manifests
        (none,) = istio_objects.render_profile("payments", "none", mixed).manifests
        hosts = none["spec"]["egress"][0]["hosts"]
        assert "./*" not in hosts
        entries = [h for m in stripe if m["kind"] == "ServiceEntry" for h in m["spec"]["hosts"]]
        assert entries and not any(h.endswith(f"/{entry}") for h in hosts for entry in entries)
        domain = policy_with(mixed, dns={"clusterDomain": "corp.example"})
        (sidecar,) = istio_objects.render_profile("payments", "none", domain).manifests
        assert sidecar["spec"]["egress"][0]["hosts"][0] == "./*.payments.svc.corp.example"

    @pytest.mark.parametrize("kind", ["ServiceEntry", "Sidecar"])
    def test_valid_against_the_crds(self, mixed: Policy, kind: str) -> None:
        plural = {"ServiceEntry": "serviceentries", "Sidecar": "sidecars"}[kind]
        schema = crd_schema(
            "istio-serviceentry-sidecar.yaml", f"{plural}.networking.istio.io", "v1"
        )
        found = [m for m in rendered("payments", mixed, (Backend.ISTIO,)) if m["kind"] == kind]
        assert found
        for manifest in found:
            validate(manifest, schema)
            if kind == "ServiceEntry":  # the CRD's CEL rule: CIDR addresses need NONE or STATIC
                spec = manifest["spec"]
                if any("/" in a for a in spec.get("addresses", ())):
                    assert spec["resolution"] in ("NONE", "STATIC")


class TestRenderCommand:
    def test_cilium(self) -> None:
        outcome = CliRunner().invoke(
            main, ["render", "-n", "payments", "--profile", "stripe", "--backend", "cilium"]
        )
        assert outcome.exit_code == 0, outcome.output
        documents = [d for d in yaml.safe_load_all(outcome.stdout) if d]
        assert [d["kind"] for d in documents] == ["CiliumNetworkPolicy"] * 2
        assert "matchName: api.stripe.com" in outcome.stdout

    def test_istio_says_it_cannot_enforce_alone(self) -> None:
        outcome = CliRunner().invoke(
            main, ["render", "-n", "payments", "--profile", "stripe", "--backend", "istio"]
        )
        assert outcome.exit_code == 0, outcome.output
        assert "held only by Istio's sidecar, which pods can bypass" in outcome.stderr
        kinds = [d["kind"] for d in yaml.safe_load_all(outcome.stdout) if d]
        assert kinds == ["ServiceEntry", "ServiceEntry", "Sidecar"]


class TestIstioNeverAllowsMore:
    """What a sidecar cannot tell apart is left out, and said, rather than allowed."""

    def render(self, policy: Policy, allow: list[dict[str, Any]]) -> Any:
        return istio_objects.render_profile(
            "payments", "p", policy_with(policy, profiles={"p": {"allow": allow}})
        )

    def test_each_host_keeps_its_own_ports(self, policy: Policy) -> None:
        rendered = self.render(
            policy,
            [
                {"host": "api.stripe.com", "ports": [443]},
                {"host": "db.example.org", "ports": [5432]},
            ],
        )
        ports = {
            m["spec"]["hosts"][0]: [p["number"] for p in m["spec"]["ports"]]
            for m in rendered.manifests
            if m["kind"] == "ServiceEntry"
        }
        assert ports == {"api.stripe.com": [443], "db.example.org": [5432]}
        (db,) = [m for m in rendered.manifests if m["spec"].get("hosts") == ["db.example.org"]]
        assert db["spec"]["ports"][0]["protocol"] == "TCP"
        assert db["spec"]["resolution"] == "DNS"  # to the host's own addresses, nothing else

    def test_a_wildcard_off_443_would_allow_any_address(self, policy: Policy) -> None:
        rendered = self.render(policy, [{"host": "*.example.com", "ports": [443, 8443]}])
        (entry, _) = rendered.manifests
        assert [p["number"] for p in entry["spec"]["ports"]] == [443]
        assert any("*.example.com on port 8443" in why for why in rendered.unrendered)
        only_off = self.render(policy, [{"host": "*.example.com", "ports": [8443]}])
        assert [m["kind"] for m in only_off.manifests] == ["Sidecar"]
        assert "./*.example.com" not in only_off.manifests[0]["spec"]["egress"][0]["hosts"]

    def test_named_ports_and_ranges_are_said(self, policy: Policy) -> None:
        rendered = self.render(
            policy,
            [
                {
                    "host": "a.example.com",
                    "ports": [443, {"port": "https"}, {"port": 8000, "endPort": 8010}],
                }
            ],
        )
        assert any("port https of a.example.com" in why for why in rendered.unrendered)
        assert any("port 8000-8010 of a.example.com" in why for why in rendered.unrendered)

    def test_no_two_profiles_share_an_entry_name(self, policy: Policy) -> None:
        """`stripe`'s wildcard entry and `stripe-wildcard`'s would have been one name."""
        profiles = {
            "stripe": {"allow": [{"host": "*.stripe.com", "ports": [443]}]},
            "stripe-wildcard": {"allow": [{"host": "stripe.com", "ports": [443]}]},
        }
        both = policy_with(policy, profiles=profiles)
        names = [
            m["metadata"]["name"]
            for profile in profiles
            for m in istio_objects.render_profile("payments", profile, both).manifests
            if m["kind"] == "ServiceEntry"
        ]
        assert len(set(names)) == 2
        assert all(len(label) <= 63 for name in names for label in name.split("."))


class TestServerNames:
    def test_hosts_behind_shared_addresses_are_held_to_their_tls_name(self, policy: Policy) -> None:
        cdn = {
            "tlsServerNames": True,
            "allow": [
                {"host": "assets.example.com", "ports": [443]},
                {"host": "*.cdn.example.net", "ports": [443, 8443]},
                {"cidr": "34.210.129.0/24", "ports": [443]},
            ],
        }
        shared = policy_with(policy, profiles={"cdn": cdn})
        (manifest,) = cilium_policies.render_profile("payments", "cdn", shared).manifests
        hosts = [rule for rule in manifest["spec"]["egress"] if "toFQDNs" in rule]
        assert [rule["toPorts"][0]["serverNames"] for rule in hosts] == [
            ["assets.example.com"],
            ["*.cdn.example.net"],
        ]
        assert hosts[1]["toPorts"][0]["ports"] == [
            {"port": "443", "protocol": "TCP"},
            {"port": "8443", "protocol": "TCP"},
        ]
        ranges = [rule for rule in manifest["spec"]["egress"] if "toCIDRSet" in rule]
        assert "serverNames" not in ranges[0]["toPorts"][0]  # only host names have one
        schema = crd_schema(
            "cilium-ciliumnetworkpolicies.yaml", "ciliumnetworkpolicies.cilium.io", "v2"
        )
        validate(manifest, schema)

    def test_off_by_default(self, policy: Policy) -> None:
        (manifest,) = cilium_policies.render_profile("payments", "stripe", policy).manifests
        assert "serverNames" not in str(manifest)

    def test_a_host_without_ports_is_refused(self, policy: Policy) -> None:
        with pytest.raises(ValueError, match="tlsServerNames: true needs the ports"):
            policy_with(
                policy,
                profiles={"cdn": {"tlsServerNames": True, "allow": [{"host": "a.example.com"}]}},
            )


def test_an_entry_listed_twice_or_alike_gets_a_name_of_its_own(policy: Policy) -> None:
    allow = [
        {"cidr": "1::2/128", "ports": [443]},
        {"cidr": "1:2::/128", "ports": [443]},
        {"cidr": "34.210.129.0/24", "ports": [443]},
        {"cidr": "34.210.129.0/24", "ports": [8443]},
        {"host": "dns.example.com", "ports": [{"port": 53, "protocol": "UDP"}, 853]},
    ]
    rendered = istio_objects.render_profile(
        "payments", "p", policy_with(policy, profiles={"p": {"allow": allow}})
    )
    names = [m["metadata"]["name"] for m in rendered.manifests if m["kind"] == "ServiceEntry"]
    assert len(names) == len(set(names)) == 5
    assert any("UDP port 53 of dns.example.com" in why for why in rendered.unrendered)
