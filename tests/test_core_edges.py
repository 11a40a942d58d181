"""Edges of the core's small pieces: reading raw objects, Kubernetes names, the check registry,
suggestions, memoised renderings, and requests shaped as only a crafted client sends them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from builders import PROFILE, ns_labels, pod, pod_spec, request, workload

from webhook.core import kube_names
from webhook.core.decision import allowed
from webhook.core.egress_coverage import allowed_rules
from webhook.core.egress_objects import egress_intents
from webhook.core.evaluate import mutate, validate
from webhook.core.findings import Finding, Severity, Subject, registered
from webhook.core.namespace import namespace_context
from webhook.core.namespace_preview import namespace_change, preview
from webhook.core.network_policies import unexpressible
from webhook.core.policy import Policy
from webhook.core.raw_object import EMPTY, mapping_at, section, text_at, where
from webhook.core.request import AdmissionRequest
from webhook.core.suggestions import closest
from webhook.core.wording import message, sentence_about
from webhook.core.workloads import find_workload, group_of


class TestRawObject:
    @pytest.mark.parametrize(
        ("obj", "expected"),
        [
            pytest.param({"metadata": {"namespace": "a", "name": "b"}}, ("a", "b"), id="set"),
            pytest.param({"metadata": {"namespace": 1, "name": ["b"]}}, ("", ""), id="not-text"),
            pytest.param({"metadata": "x"}, ("", ""), id="no-mapping"),
            pytest.param(None, ("", ""), id="nothing"),
        ],
    )
    def test_where_is_namespace_and_name_or_empty(self, obj: Any, expected: Any) -> None:
        assert where(obj) == expected

    def test_text_at_reads_strings_only(self) -> None:
        obj = {"metadata": {"uid": "u-1", "generation": 3}}
        assert text_at(obj, "metadata", "uid") == "u-1"
        assert text_at(obj, "metadata", "generation") == ""
        assert text_at(obj, "metadata", "absent") == ""

    def test_mapping_at_and_section_walk_dicts_only(self) -> None:
        obj = {"a": {"b": {"c": 1}}, "l": [{"b": {}}]}
        assert mapping_at(obj, "a", "b") == {"c": 1}
        assert mapping_at(obj, "a", "b", "c") is None
        assert mapping_at(obj, "l", "b") is None
        assert section(obj, "a") == {"b": {"c": 1}}
        assert section(obj, "missing") is EMPTY
        assert section("text", "a") is EMPTY


class TestKubeNames:
    def test_a_service_is_reached_by_four_names(self) -> None:
        assert kube_names.service_dns_names("hook", "ops") == [
            "hook",
            "hook.ops",
            "hook.ops.svc",
            "hook.ops.svc.cluster.local",
        ]

    def test_egress_guards_own_users_are_its_two_service_accounts(self) -> None:
        assert kube_names.own_users("ops", "hook") == {
            "system:serviceaccount:ops:hook",
            "system:serviceaccount:ops:hook-reconciler",
        }

    @pytest.mark.parametrize(
        ("check", "value", "valid"),
        [
            (kube_names.is_dns1123_label, "a" * 63, True),
            (kube_names.is_dns1123_label, "a" * 64, False),
            (kube_names.is_dns1123_label, "A", False),
            (kube_names.is_dns1123_subdomain, ("a" * 63 + ".") * 3 + "a" * 61, True),
            (kube_names.is_dns1123_subdomain, ("a" * 63 + ".") * 3 + "a" * 62, False),
            (kube_names.is_label_value, "", True),
            (kube_names.is_label_value, "A" * 64, False),
            (kube_names.is_qualified_name, "", False),
            (kube_names.is_qualified_name, "Name_1", True),
        ],
    )
    def test_the_grammars_have_their_limits(self, check: Any, value: str, valid: bool) -> None:
        assert check(value) is valid


class TestRegistry:
    def test_a_registration_keeps_its_id_title_and_kind(self) -> None:
        info = registered()["proxy-env"]
        assert (info.id, info.workload_check) == ("proxy-env", False)
        assert info.title.startswith("proxy variables")
        assert registered()["profile-label"].workload_check is True


def test_only_close_names_are_suggested() -> None:
    names = ["internal", "none", "stripe"]
    assert closest("strpe", names) == "stripe"
    assert closest("stripxyzw", names) is None  # 0.67 alike: under the cutoff
    assert closest("", names) is None


class TestWords:
    def test_an_allowed_decision_has_no_message(self) -> None:
        assert message(allowed()) == ""

    def test_a_finding_without_a_hint_under_its_own_heading_is_its_reason(self) -> None:
        finding = Finding("host-network", Severity.ADVICE, Subject("Pod", "p"), "is odd")
        assert sentence_about(finding, Subject("Pod", "p")) == "is odd"


class TestMemo:
    def test_renderings_are_made_once_per_policy(self, policy: Policy) -> None:
        context = namespace_context("shop", ns_labels(), policy)
        first = egress_intents("shop", context, policy, "stripe")
        assert egress_intents("shop", context, policy, "stripe") is first
        assert egress_intents("shop", context, policy, "none") is not first
        hosts = unexpressible("stripe", policy, namespace_injects_all=False)
        assert unexpressible("stripe", policy, namespace_injects_all=False) is hosts

    def test_what_a_profile_allows_is_read_once_per_policy(self, policy: Policy) -> None:
        """Each rule of every NetworkPolicy reviewed is held against these."""
        rules = allowed_rules("shop", "stripe", policy, namespace_injects_all=False)
        assert allowed_rules("shop", "stripe", policy, namespace_injects_all=False) is rules
        assert allowed_rules("shop", "stripe", policy, namespace_injects_all=True) is not rules


def test_a_pod_without_a_spec_gets_nothing_and_says_nothing(policy: Policy) -> None:
    from webhook.core.proxy_env import inject_proxy_env

    assert policy.proxy is not None
    injection = inject_proxy_env({"metadata": {}}, policy.proxy, ("containers",))
    assert (injection.patch, injection.findings, injection.injected) == ((), (), {})


def test_mutating_what_is_no_pod_says_why(policy: Policy) -> None:
    decision = mutate(request(workload("Deployment")), ns_labels("enforce", "proxy"), policy)
    assert decision.note is not None and decision.note.value == "only pods are mutated, on creation"


class TestCraftedRequests:
    """What only a client other than the API server sends: the answer is still an answer."""

    def test_an_empty_api_version_leaves_the_kind_to_decide(self) -> None:
        obj = workload("Deployment", {PROFILE: "none"})
        obj["apiVersion"] = ""
        assert group_of("") is None
        found = find_workload(obj, "Deployment")
        assert found is not None and found.labels_path == "spec.template.metadata.labels"

    def test_an_env_entry_that_is_not_an_object_is_kept_and_passed_over(
        self, policy: Policy
    ) -> None:
        obj = pod({PROFILE: "none"}, pod_spec({"name": "app", "image": "x", "env": ["junk"]}))
        decision = mutate(request(obj), ns_labels("enforce", "proxy"), policy)
        assert [op["path"] for op in decision.patch][:1] == ["/spec/containers/0/env/-"]

    @pytest.mark.parametrize(
        "old_spec",
        [
            pytest.param(None, id="old-pod-without-spec"),
            pytest.param({"ephemeralContainers": ["junk", {"name": 3}]}, id="junk-entries"),
        ],
    )
    def test_ephemeral_containers_of_an_odd_old_pod_are_all_new(
        self, old_spec: Any, policy: Policy
    ) -> None:
        new = pod({PROFILE: "none"}, pod_spec(ephemeralContainers=[{"name": "dbg", "image": "x"}]))
        old = pod({PROFILE: "none"})
        if old_spec is None:
            del old["spec"]
        else:
            old["spec"] = old_spec
        req = request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
        decision = mutate(req, ns_labels("enforce", "proxy"), policy)
        assert decision.patch[0]["path"] == "/spec/ephemeralContainers/0/env"

    def test_a_namespace_that_had_no_labels_gets_its_preview(self, policy: Policy) -> None:
        new = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"egress-guard.io/mode": "warn"}},
        }
        old = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
        req = AdmissionRequest(
            uid="u", kind="Namespace", operation="UPDATE", name="shop", object=new, old_object=old
        )
        assert namespace_change(req, policy) is not None

    def test_a_nameless_namespace_is_named_empty(self, policy: Policy) -> None:
        new = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"labels": {"egress-guard.io/mode": "warn"}},
        }
        req = AdmissionRequest(uid="u", kind="Namespace", operation="CREATE", object=new)
        change = namespace_change(req, policy)
        assert change is not None and change.name == ""

    def test_the_preview_passes_over_objects_that_run_no_pods(self, policy: Policy) -> None:
        req = AdmissionRequest(
            uid="u",
            kind="Namespace",
            operation="UPDATE",
            name="shop",
            object={
                "kind": "Namespace",
                "metadata": {"name": "shop", "labels": {"egress-guard.io/mode": "enforce"}},
            },
            old_object={"kind": "Namespace", "metadata": {"name": "shop", "labels": {}}},
        )
        change = namespace_change(req, policy)
        assert change is not None
        listed = [
            {"kind": "ConfigMap", "metadata": {"name": "c"}},
            workload("Deployment", {}, name="late"),
        ]
        decision = preview(change, listed, complete=True, policy=policy)
        assert any('Deployment "late"' in w for w in decision.warnings)

    def test_a_request_naming_nothing_is_still_answered(self, policy: Policy) -> None:
        req = replace(request(workload("Deployment")), name="")
        del req.object["metadata"]["name"]  # type: ignore[index, union-attr]
        decision = validate(req, ns_labels(), policy)
        assert not decision.allowed
        assert decision.violations[0].subject == Subject("Deployment", "<unnamed>")
