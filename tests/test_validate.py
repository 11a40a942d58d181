"""The validating core: every workload kind, every mode, UPDATE/DELETE, exemptions, messages."""

from __future__ import annotations

import re

import pytest
from builders import INJECT, MODE, PROFILE, WORKLOAD_KINDS, ns_labels, request, workload

from webhook.core.decision import Verdict
from webhook.core.evaluate import validate
from webhook.core.policy import Policy
from webhook.core.wording import MAX_WARNING_CHARS

QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def labels_path(kind: str) -> str:
    return {
        "Pod": "metadata.labels",
        "CronJob": "spec.jobTemplate.spec.template.metadata.labels",
    }.get(kind, "spec.template.metadata.labels")


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_enforce_denies_a_workload_without_the_label(kind: str, policy: Policy) -> None:
    decision = validate(request(workload(kind, {"app": "web"})), ns_labels("enforce"), policy)
    assert not decision.allowed
    assert decision.code == 403
    assert decision.verdict is Verdict.DENIED
    assert PROFILE in decision.message
    assert labels_path(kind) in decision.message
    assert "internal, none, stripe, web-via-proxy" in decision.message


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_enforce_allows_a_workload_with_a_defined_profile(kind: str, policy: Policy) -> None:
    obj = workload(kind, {"app": "web", PROFILE: "stripe"})
    decision = validate(request(obj), ns_labels("enforce"), policy)
    assert decision.allowed
    assert decision.verdict is Verdict.ALLOWED
    assert not decision.violations


@pytest.mark.parametrize(
    ("value", "closest"),
    [
        pytest.param("strpe", "stripe", id="typo"),
        pytest.param("Stripe", "stripe", id="case"),
        pytest.param("internl", "internal", id="missing-letter"),
        pytest.param("zzz", None, id="nothing-close"),
        pytest.param("nosuchprofile", None, id="nothing-close-either"),
    ],
)
def test_unknown_profile_is_denied_naming_the_closest(
    value: str, closest: str | None, policy: Policy
) -> None:
    decision = validate(request(workload("Deployment", {PROFILE: value})), ns_labels(), policy)
    assert not decision.allowed
    assert f'"{value}"' in decision.message
    assert "is not defined" in decision.message
    if closest:
        assert f'did you mean "{closest}"' in decision.message
    else:
        assert "did you mean" not in decision.message  # nothing is suggested that is not close
    (finding,) = decision.violations
    assert finding.check == "profile-label"
    assert finding.get("suggestion") == closest
    assert finding.get("value") == value


def test_empty_profile_value_counts_as_missing(policy: Policy) -> None:
    decision = validate(request(workload("Deployment", {PROFILE: ""})), ns_labels(), policy)
    assert not decision.allowed
    assert "has no egress profile" in decision.message


@pytest.mark.parametrize("kind", [k for k in WORKLOAD_KINDS if k != "Pod"])
def test_label_on_the_controller_only_is_denied_with_a_hint(kind: str, policy: Policy) -> None:
    obj = workload(kind, {"app": "web"}, own_labels={PROFILE: "stripe"})
    decision = validate(request(obj), ns_labels(), policy)
    assert not decision.allowed
    assert "own metadata.labels" in decision.message
    assert f"move it to {labels_path(kind)}" in decision.message


def test_profile_as_an_annotation_is_denied_with_a_hint(policy: Policy) -> None:
    obj = workload("Deployment", {"app": "web"})
    obj["spec"]["template"]["metadata"]["annotations"] = {PROFILE: "stripe"}
    decision = validate(request(obj), ns_labels(), policy)
    assert not decision.allowed
    assert "annotation" in decision.message
    assert "must be a label" in decision.message


def test_template_without_metadata_is_denied_not_crashed(policy: Policy) -> None:
    obj = workload("Deployment")
    del obj["spec"]["template"]["metadata"]
    decision = validate(request(obj), ns_labels(), policy)
    assert not decision.allowed


def test_deployment_without_a_template_is_denied(policy: Policy) -> None:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {}}
    assert not validate(request(obj), ns_labels(), policy).allowed


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_warn_mode_allows_with_short_warnings(kind: str, policy: Policy) -> None:
    decision = validate(request(workload(kind)), ns_labels("warn"), policy)
    assert decision.allowed
    assert decision.verdict is Verdict.WARNED
    assert decision.warnings
    assert all(len(w) <= MAX_WARNING_CHARS for w in decision.warnings)
    assert any(PROFILE in w for w in decision.warnings)
    assert not decision.audit_annotations


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_audit_mode_allows_and_records_the_violation(kind: str, policy: Policy) -> None:
    decision = validate(request(workload(kind)), ns_labels("audit"), policy)
    assert decision.allowed
    assert decision.verdict is Verdict.AUDITED
    assert "has no egress profile" in decision.audit_annotations["violation"]
    # The API server prefixes keys with the webhook's name; the rest must be a qualified name.
    assert all(QUALIFIED_NAME.match(key) and len(key) <= 63 for key in decision.audit_annotations)


@pytest.mark.parametrize(
    ("namespace", "labels"),
    [
        pytest.param("payments", None, id="namespace-unknown"),
        pytest.param("payments", {}, id="no-mode-label"),
        pytest.param("payments", {"team": "payments"}, id="other-labels-only"),
        pytest.param("kube-system", ns_labels("enforce"), id="exempt-even-if-labelled"),
        pytest.param("egress-guard", ns_labels("enforce"), id="own-namespace-exempt"),
    ],
)
def test_unmanaged_and_exempt_namespaces_are_untouched(
    namespace: str, labels: dict[str, str] | None, policy: Policy
) -> None:
    decision = validate(request(workload("Deployment"), namespace=namespace), labels, policy)
    assert decision.allowed
    assert not decision.warnings
    assert not decision.patch
    assert not decision.intents
    assert decision.note


def test_an_invalid_mode_value_is_treated_as_enforce_and_said(policy: Policy) -> None:
    decision = validate(request(workload("Deployment")), {MODE: "enforcing"}, policy)
    assert not decision.allowed
    assert any("'enforcing'" in w and "treated as enforce" in w for w in decision.warnings)


def test_an_invalid_inject_value_falls_back_to_the_default_and_is_said(policy: Policy) -> None:
    obj = workload("Deployment", {PROFILE: "stripe"})
    decision = validate(request(obj), {MODE: "enforce", INJECT: "netpol"}, policy)
    assert decision.allowed
    assert any("'netpol'" in w for w in decision.warnings)
    assert decision.intents  # enforce's default: network policies


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_delete_and_connect_are_allowed_untouched(operation: str, policy: Policy) -> None:
    req = request(None, operation=operation, old=workload("Deployment"), kind="Deployment")
    decision = validate(req, ns_labels(), policy)
    assert decision.allowed
    assert not decision.warnings


@pytest.mark.parametrize("sub_resource", ["scale", "ephemeralcontainers", "binding", "resize"])
def test_subresources_are_allowed_untouched(sub_resource: str, policy: Policy) -> None:
    req = request(workload("Pod"), operation="UPDATE", sub_resource=sub_resource)
    decision = validate(req, ns_labels(), policy)
    assert decision.allowed
    assert not decision.warnings


def test_non_workloads_are_allowed(policy: Policy) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    assert validate(request(config_map), ns_labels(), policy).allowed
    pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
    assert validate(request(pod_template), ns_labels(), policy).allowed


def test_custom_kind_with_a_pod_template_is_a_workload(policy: Policy) -> None:
    rollout = workload("Rollout")
    assert not validate(request(rollout), ns_labels(), policy).allowed
    knative = workload("Rollout", {PROFILE: "none"})
    knative["kind"] = "Service"
    knative["apiVersion"] = "serving.knative.dev/v1"
    assert validate(request(knative), ns_labels(), policy).allowed


def test_custom_kind_whose_template_is_not_a_pod_template_is_not_a_workload(
    policy: Policy,
) -> None:
    obj = {
        "apiVersion": "example.io/v1",
        "kind": "Report",
        "metadata": {"name": "r"},
        "spec": {"template": {"title": "weekly"}},
    }
    assert validate(request(obj), ns_labels(), policy).allowed


def test_request_kind_is_matched_without_regard_to_case(policy: Policy) -> None:
    req = request(workload("Pod"), kind="pod")
    assert not validate(req, ns_labels(), policy).allowed


class TestUpdate:
    def test_removing_the_label_is_denied(self, policy: Policy) -> None:
        old = workload("Deployment", {PROFILE: "stripe"})
        new = workload("Deployment", {"app": "web"})
        decision = validate(request(new, operation="UPDATE", old=old), ns_labels(), policy)
        assert not decision.allowed

    def test_an_object_that_already_lacked_the_label_stays_updatable(self, policy: Policy) -> None:
        old = workload("Deployment")
        new = workload("Deployment")
        new["spec"]["replicas"] = 5
        decision = validate(request(new, operation="UPDATE", old=old), ns_labels(), policy)
        assert decision.allowed
        assert decision.verdict is Verdict.WARNED
        assert any("before this update" in w for w in decision.warnings)
        assert all(len(w) <= MAX_WARNING_CHARS for w in decision.warnings)

    def test_an_object_with_an_unknown_profile_before_stays_updatable(self, policy: Policy) -> None:
        old = workload("Deployment", {PROFILE: "gone"})
        decision = validate(
            request(workload("Deployment", {PROFILE: "gone"}), operation="UPDATE", old=old),
            ns_labels(),
            policy,
        )
        assert decision.allowed

    def test_update_without_old_object_follows_create_rules(self, policy: Policy) -> None:
        decision = validate(
            request(workload("Deployment"), operation="UPDATE"), ns_labels(), policy
        )
        assert not decision.allowed

    def test_an_object_being_deleted_is_always_allowed(self, policy: Policy) -> None:
        old = workload("Deployment", {PROFILE: "stripe"})
        new = workload("Deployment")
        new["metadata"]["deletionTimestamp"] = "2026-11-21T10:00:00Z"
        new["metadata"]["finalizers"] = []
        decision = validate(request(new, operation="UPDATE", old=old), ns_labels(), policy)
        assert decision.allowed

    def test_update_with_a_valid_label_makes_no_intents(self, policy: Policy) -> None:
        obj = workload("Deployment", {PROFILE: "stripe"})
        decision = validate(request(obj, operation="UPDATE", old=obj), ns_labels(), policy)
        assert decision.allowed
        assert not decision.intents


class TestIntents:
    def test_enforce_create_asks_for_default_deny_and_the_profile_policy(
        self, policy: Policy
    ) -> None:
        decision = validate(
            request(workload("Deployment", {PROFILE: "stripe"})), ns_labels(), policy
        )
        (intent,) = decision.intents
        assert intent.namespace == "payments"
        assert intent.required
        assert intent.names == ("egress-guard-default-deny", "egress-guard-profile-stripe")

    def test_host_destinations_are_reported_not_dropped(self, policy: Policy) -> None:
        decision = validate(
            request(workload("Deployment", {PROFILE: "stripe"})), ns_labels(), policy
        )
        assert any("api.stripe.com" in w and "proxy" in w for w in decision.warnings)

    @pytest.mark.parametrize(
        ("mode", "inject", "expected"),
        [
            ("enforce", None, True),
            ("enforce", "networkpolicy", True),
            ("enforce", "all", True),
            ("enforce", "proxy", False),
            ("enforce", "none", False),
            ("warn", None, False),
            ("audit", None, False),
            ("warn", "networkpolicy", True),
        ],
    )
    def test_intents_follow_the_effective_inject(
        self, mode: str, inject: str | None, expected: bool, policy: Policy
    ) -> None:
        obj = workload("Deployment", {PROFILE: "none"})
        decision = validate(request(obj), ns_labels(mode, inject), policy)
        assert bool(decision.intents) is expected
        if decision.intents:
            assert decision.intents[0].required is (mode == "enforce")

    def test_denied_workloads_ask_for_nothing(self, policy: Policy) -> None:
        assert not validate(request(workload("Deployment")), ns_labels(), policy).intents

    def test_warn_mode_admitted_violation_gets_default_deny_when_asked(
        self, policy: Policy
    ) -> None:
        decision = validate(request(workload("Deployment")), ns_labels("warn", "all"), policy)
        assert decision.allowed
        (intent,) = decision.intents
        assert intent.names == ("egress-guard-default-deny",)
        assert not intent.required


def test_every_warning_fits_and_there_are_few(policy: Policy) -> None:
    obj = workload("Deployment", {"app": "web"}, own_labels={PROFILE: "a" * 60})
    obj["spec"]["template"]["spec"]["hostNetwork"] = True
    decision = validate(request(obj), {MODE: "warn-ish", INJECT: "x" * 60}, policy)
    assert 0 < len(decision.warnings) <= 6
    assert all(len(w) <= MAX_WARNING_CHARS for w in decision.warnings)


def test_host_network_pods_are_refused_where_network_policies_enforce(policy: Policy) -> None:
    obj = workload("Deployment", {PROFILE: "none"})
    obj["spec"]["template"]["spec"]["hostNetwork"] = True
    decision = validate(request(obj), ns_labels(), policy)
    assert not decision.allowed
    assert [f.check for f in decision.violations] == ["host-network"]
    warned = validate(request(obj), ns_labels("warn", "networkpolicy"), policy)
    assert warned.allowed
    assert any("hostNetwork" in w for w in warned.warnings)


class TestUpdateModes:
    def test_audit_records_a_preexisting_violation_without_warnings(self, policy: Policy) -> None:
        old, new = workload("Deployment"), workload("Deployment")
        new["spec"]["replicas"] = 4
        decision = validate(request(new, operation="UPDATE", old=old), ns_labels("audit"), policy)
        assert decision.allowed
        assert decision.verdict is Verdict.AUDITED
        assert not decision.warnings
        assert decision.audit_annotations["preexisting"] == "true"
        assert "has no egress profile" in decision.audit_annotations["violation"]

    def test_warn_still_says_why_a_preexisting_violation_is_allowed(self, policy: Policy) -> None:
        old, new = workload("Deployment"), workload("Deployment")
        decision = validate(request(new, operation="UPDATE", old=old), ns_labels("warn"), policy)
        assert decision.allowed
        assert any("before this update" in w for w in decision.warnings)

    @pytest.mark.parametrize(
        ("old_profile", "new_profile", "expected"),
        [
            pytest.param(None, "stripe", ("egress-guard-profile-stripe",), id="profile-added"),
            pytest.param("none", "stripe", ("egress-guard-profile-stripe",), id="profile-changed"),
            pytest.param("stripe", "stripe", None, id="profile-unchanged"),
        ],
    )
    def test_an_update_that_changes_the_profile_ensures_its_policy(
        self,
        old_profile: str | None,
        new_profile: str,
        expected: tuple[str, ...] | None,
        policy: Policy,
    ) -> None:
        old = workload("Deployment", {PROFILE: old_profile} if old_profile else {"app": "web"})
        new = workload("Deployment", {PROFILE: new_profile})
        decision = validate(request(new, operation="UPDATE", old=old), ns_labels(), policy)
        assert decision.allowed
        if expected is None:
            assert not decision.intents
        else:
            (intent,) = decision.intents
            assert intent.names[1:] == expected
