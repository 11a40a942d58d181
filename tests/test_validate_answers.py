"""The validating webhook's answers as the API server receives them: audit annotations, the bounds
on warnings, who is named in a message, and what each mode keeps of the intents.

These assert the AdmissionResponse (allowed, status, warnings, auditAnnotations), the contract with
the API server, so they hold whatever shape the decision takes inside egress-guard.
"""

from __future__ import annotations

from typing import Any

import pytest
from builders import INJECT, MODE, PROFILE, ns_labels, policy_with, request, response, workload

from webhook.core.evaluate import validate
from webhook.core.policy import Policy

MAX_WARNING_CHARS = 120
MAX_WARNINGS = 6


def answer(obj: dict[str, Any], labels: dict[str, str], policy: Policy, **kw: Any) -> Any:
    return validate(request(obj, **kw), labels, policy)


def with_host_network(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    return obj


class TestAudit:
    def test_a_create_records_the_mode_and_the_violation_and_nothing_else(
        self, policy: Policy
    ) -> None:
        wire = response(answer(workload("Deployment", {"app": "web"}), ns_labels("audit"), policy))
        assert wire["allowed"] is True
        assert set(wire["auditAnnotations"]) == {"mode", "violation"}
        assert wire["auditAnnotations"]["mode"] == "audit"
        assert 'Deployment "web"' in wire["auditAnnotations"]["violation"]
        assert "warnings" not in wire

    def test_an_update_of_an_object_that_violated_before_is_marked_preexisting(
        self, policy: Policy
    ) -> None:
        old, new = workload("StatefulSet"), workload("StatefulSet")
        new["spec"]["replicas"] = 3
        decision = answer(new, ns_labels("audit"), policy, operation="UPDATE", old=old)
        wire = response(decision)
        assert wire["auditAnnotations"]["preexisting"] == "true"
        assert wire["auditAnnotations"]["mode"] == "audit"
        assert decision.mode is not None
        assert decision.mode.value == "audit"

    def test_an_update_that_takes_the_profile_away_is_not_preexisting(self, policy: Policy) -> None:
        old = workload("Deployment", {PROFILE: "stripe"})
        new = workload("Deployment", {"app": "web"})
        wire = response(answer(new, ns_labels("audit"), policy, operation="UPDATE", old=old))
        assert "preexisting" not in wire["auditAnnotations"]

    def test_a_violating_workload_still_gets_its_default_deny_when_inject_asks(
        self, policy: Policy
    ) -> None:
        decision = answer(workload("Deployment"), ns_labels("audit", "networkpolicy"), policy)
        assert decision.allowed
        (intent,) = decision.intents
        assert intent.names == ("egress-guard-default-deny",)
        assert intent.required is False

    def test_an_admitted_workload_in_audit_gets_its_profile_policy_too(
        self, policy: Policy
    ) -> None:
        obj = workload("Deployment", {PROFILE: "stripe"})
        (intent,) = answer(obj, ns_labels("audit", "all"), policy).intents
        assert intent.names == ("egress-guard-default-deny", "egress-guard-profile-stripe")


class TestWarn:
    def test_warnings_name_the_violation_and_the_defined_profiles(self, policy: Policy) -> None:
        decision = answer(workload("Deployment"), ns_labels("warn"), policy)
        wire = response(decision)
        assert wire["allowed"] is True
        assert any('Deployment "web"' in w and "(warn)" in w for w in wire["warnings"])
        assert any("internal, none, stripe, web-via-proxy" in w for w in wire["warnings"])
        assert decision.mode is not None
        assert decision.mode.value == "warn"

    def test_a_policy_without_profiles_says_there_are_none(self, policy: Policy) -> None:
        bare = policy_with(policy, profiles={}, proxy=None)
        warnings = response(answer(workload("Deployment"), ns_labels("warn"), bare))["warnings"]
        assert any("defined profiles: (none)" in w for w in warnings)

    def test_a_preexisting_violation_keeps_the_warn_mode(self, policy: Policy) -> None:
        old, new = workload("Deployment"), workload("Deployment")
        decision = answer(new, ns_labels("warn"), policy, operation="UPDATE", old=old)
        assert decision.allowed
        assert decision.mode is not None
        assert decision.mode.value == "warn"
        assert any('Deployment "web"' in w for w in decision.warnings)


class TestEnforce:
    def test_the_denial_names_the_object(self, policy: Policy) -> None:
        decision = answer(workload("Deployment", name="checkout"), ns_labels(), policy)
        wire = response(decision)
        assert wire["allowed"] is False
        assert wire["status"]["code"] == 403
        assert wire["status"]["reason"] == "Forbidden"
        assert wire["status"]["message"].startswith('Deployment "checkout"')
        assert decision.mode is not None
        assert decision.mode.value == "enforce"

    def test_an_allowed_workload_carries_the_mode(self, policy: Policy) -> None:
        decision = answer(workload("Deployment", {PROFILE: "none"}), ns_labels(), policy)
        assert decision.mode is not None
        assert decision.mode.value == "enforce"

    def test_a_policy_without_profiles_says_none_are_defined(self, policy: Policy) -> None:
        bare = policy_with(policy, profiles={}, proxy=None)
        message = response(answer(workload("Deployment"), ns_labels(), bare))["status"]["message"]
        assert "(none defined)" in message

    def test_an_unknown_profile_names_where_the_label_is(self, policy: Policy) -> None:
        message = response(answer(workload("CronJob", {PROFILE: "strpe"}), ns_labels(), policy))[
            "status"
        ]["message"]
        assert f"spec.jobTemplate.spec.template.metadata.labels[{PROFILE}]" in message
        assert "internal, none, stripe, web-via-proxy" in message

    def test_a_misplaced_label_says_where_it_is_and_where_it_goes(self, policy: Policy) -> None:
        obj = workload("Deployment", {"app": "web"}, own_labels={PROFILE: "stripe"})
        wire = response(answer(obj, ns_labels(), policy))
        assert f"{PROFILE}=stripe" in wire["status"]["message"]
        assert "spec.template.metadata.labels" in wire["status"]["message"]

    @pytest.mark.parametrize("warn_form", ["annotation", "misplaced"])
    def test_the_hints_have_a_short_form_for_warnings(self, warn_form: str, policy: Policy) -> None:
        if warn_form == "annotation":
            obj = workload("Deployment", {"app": "web"})
            obj["spec"]["template"]["metadata"]["annotations"] = {PROFILE: "stripe"}
        else:
            obj = workload("Deployment", {"app": "web"}, own_labels={PROFILE: "stripe"})
        warnings = response(answer(obj, ns_labels("warn"), policy))["warnings"]
        assert any('Deployment "web"' in w and PROFILE in w for w in warnings)


class TestHostNetwork:
    def test_only_host_network_pods_are_told_policies_do_not_apply(self, policy: Policy) -> None:
        plain = workload("Deployment", {PROFILE: "none"})
        assert "warnings" not in response(answer(plain, ns_labels("warn", "all"), policy))
        host = with_host_network(workload("Deployment", {PROFILE: "none"}))
        warnings = response(answer(host, ns_labels("warn", "all"), policy))["warnings"]
        assert any('Deployment "web"' in w and "hostNetwork" in w for w in warnings)

    def test_nothing_is_said_where_no_network_policy_is_made(self, policy: Policy) -> None:
        host = with_host_network(workload("Pod", {PROFILE: "none"}))
        for inject in ("proxy", "none"):
            answered = response(answer(host, ns_labels("enforce", inject), policy))
            assert answered["allowed"]
            assert not any("hostNetwork" in w for w in answered["warnings"])


class TestWarningBounds:
    """At most six warnings of at most 120 characters: the API server drops what is longer."""

    @staticmethod
    def noisy_review(policy: Policy, containers: int) -> Any:
        """A Deployment under warn with many things to say: bad namespace labels, a host-network
        pod, and a misplaced label."""
        obj = workload("Deployment", {"app": "web"}, own_labels={PROFILE: "stripe"})
        with_host_network(obj)
        obj["spec"]["template"]["spec"]["containers"] = [
            {"name": f"c{i}", "image": "x"} for i in range(containers)
        ]
        return answer(obj, {MODE: "warn-ish", INJECT: "sometimes"}, policy)

    def test_every_warning_fits_in_120_characters(self, policy: Policy) -> None:
        warnings = response(self.noisy_review(policy, 1))["warnings"]
        assert warnings
        assert all(len(w) <= MAX_WARNING_CHARS for w in warnings)


@pytest.mark.parametrize("mode", ["enforce", "warn", "audit"])
def test_an_exempt_namespace_answers_plainly_whatever_its_labels(mode: str, policy: Policy) -> None:
    wire = response(answer(workload("Pod"), ns_labels(mode), policy, namespace="kube-system"))
    assert wire == {"uid": "uid-1", "allowed": True}
