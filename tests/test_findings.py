"""Findings: registered check ids, the decision's tag, and the words made from them in one place."""

from __future__ import annotations

import ast
import pathlib
from typing import Any

import pytest
from builders import INJECT, MODE, PROFILE, ns_labels, pod, request, response, workload

import webhook
from webhook.core import findings as findings_module
from webhook.core.checks import CHECKS
from webhook.core.decision import Decision, Verdict, allowed, denied, errored, unavailable
from webhook.core.evaluate import mutate, validate
from webhook.core.findings import (
    DuplicateCheck,
    Finding,
    Severity,
    Subject,
    detail,
    register,
    registered,
)
from webhook.core.policy import Mode, Policy
from webhook.core.wording import (
    MAX_WARNINGS,
    PREFIX,
    WARN_PREFIX,
    sentence,
    sentence_about,
    warnings,
)

PACKAGE = pathlib.Path(webhook.__file__).parent


def finding(
    check: str = "profile-label", severity: Severity = Severity.VIOLATION, **kw: Any
) -> Finding:
    return Finding(
        check,
        severity,
        kw.pop("subject", Subject("Deployment", "web")),
        kw.pop("reason", "has no egress profile"),
        kw.pop("hint", "set the label"),
        **kw,
    )


@pytest.fixture
def scratch_registry() -> Any:
    """Registrations a test makes are undone after it."""
    saved = dict(findings_module._REGISTRY)
    yield
    findings_module._REGISTRY.clear()
    findings_module._REGISTRY.update(saved)


class TestRegistry:
    def test_a_registration_is_kept_whole(self, scratch_registry: Any) -> None:
        assert register("scratch-one", "a title") == "scratch-one"
        register("scratch-two", "another", workload_check=True)
        one, two = registered()["scratch-one"], registered()["scratch-two"]
        assert (one.id, one.title, one.workload_check) == ("scratch-one", "a title", False)
        assert (two.id, two.title, two.workload_check) == ("scratch-two", "another", True)

    def test_an_id_is_registered_once(self) -> None:
        with pytest.raises(DuplicateCheck, match="profile-label"):
            register("profile-label", "again")

    @pytest.mark.parametrize("bad", ["Profile", "profile_label", "-x", "x-", "a--b", ""])
    def test_ids_are_lower_case_words_joined_by_dashes(self, bad: str) -> None:
        with pytest.raises(ValueError, match="lower-case"):
            register(bad, "bad")

    def test_the_workload_checks_are_registered_as_such(self) -> None:
        workload_checks = {i for i, info in registered().items() if info.workload_check}
        assert workload_checks == {check.id for check in CHECKS}

    def test_every_id_used_in_the_package_is_registered(self) -> None:
        """Each Finding(...) names its id through a registered constant, never a bare string."""
        registered_names = {
            name
            for module in _package_modules()
            for name, value in vars(module).items()
            if isinstance(value, str) and value in registered()
        }
        for path in PACKAGE.rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "Finding"
                    and node.args
                ):
                    first = node.args[0]
                    bare = isinstance(first, ast.Constant) and isinstance(first.value, str)
                    assert not bare, f"{path}: a bare check id"
                    if isinstance(first, ast.Name) and first.id != "CHECK_ID":
                        assert first.id in registered_names, f"{path}: {first.id}"


class TestDecisionTags:
    """The verdict is the tag: allowed and the code follow from it, and cannot disagree."""

    @pytest.mark.parametrize(
        ("make", "is_allowed", "code"),
        [
            pytest.param(allowed, True, 200, id="allowed"),
            pytest.param(lambda: Decision(Verdict.WARNED), True, 200, id="warned"),
            pytest.param(lambda: Decision(Verdict.AUDITED), True, 200, id="audited"),
            pytest.param(lambda: denied((finding(),)), False, 403, id="denied"),
            pytest.param(lambda: unavailable((finding(),)), False, 503, id="unavailable"),
            pytest.param(lambda: errored("boom"), False, 500, id="errored"),
        ],
    )
    def test_allowed_and_code_follow_from_the_verdict(
        self, make: Any, is_allowed: bool, code: int
    ) -> None:
        decision = make()  # made here: a decision built at collection would not be tested
        assert decision.allowed is is_allowed
        assert decision.code == code
        wire = response(decision)
        assert wire["allowed"] is is_allowed
        assert wire.get("status", {}).get("code", 200) == code

    def test_a_refusal_never_carries_a_patch_to_the_wire(self) -> None:
        refused = Decision(
            Verdict.DENIED, (finding(),), patch=({"op": "add", "path": "/x", "value": 1},)
        )
        assert "patch" not in response(refused)

    def test_an_internal_error_says_so_as_a_finding(self) -> None:
        (reason,) = errored("boom").findings
        assert reason.check == "internal-error"
        assert errored("boom").message == "boom"

    def test_adding_findings_keeps_the_rest(self) -> None:
        first = Decision(Verdict.ALLOWED, (finding(severity=Severity.ADVICE),), mode=Mode.WARN)
        second = first.with_findings(finding("host-network", Severity.ADVICE, reason="is odd"))
        assert [f.check for f in second.findings] == ["profile-label", "host-network"]
        assert second.mode is Mode.WARN
        assert len(second.warnings) == 2


class TestWords:
    def test_a_sentence_is_subject_reason_and_fix(self) -> None:
        assert sentence(finding()) == 'Deployment "web" has no egress profile: set the label'
        assert sentence(finding(hint="")) == 'Deployment "web" has no egress profile'
        assert sentence(finding(subject=None, reason="defined profiles: a")) == (
            "defined profiles: a: set the label"
        )

    def test_under_a_heading_naming_the_subject_it_is_not_named_again(self) -> None:
        f = finding()
        assert (
            sentence_about(f, Subject("Deployment", "web"))
            == "has no egress profile: set the label"
        )
        assert sentence_about(f, Subject("Deployment", "api")) == sentence(f)
        assert sentence_about(f, None) == sentence(f)

    def test_violations_admitted_under_warn_are_marked_and_advice_is_not(self) -> None:
        decision = Decision(
            Verdict.WARNED,
            (finding(), finding("host-network", Severity.ADVICE, reason="uses hostNetwork")),
            mode=Mode.WARN,
        )
        violation, advice = warnings(decision)
        assert violation.startswith(WARN_PREFIX)
        assert advice.startswith(PREFIX)

    def test_audit_keeps_violations_out_of_the_warnings(self) -> None:
        decision = Decision(
            Verdict.AUDITED, (finding(), finding("host-network", Severity.ADVICE)), mode=Mode.AUDIT
        )
        (only,) = decision.warnings
        assert "host-network" not in only
        assert decision.audit_annotations["violation"] == sentence(finding())

    def test_a_refusal_says_every_violation_in_its_message(self) -> None:
        two = denied((finding(), finding(reason="is odd", hint="")))
        assert two.message == (
            'Deployment "web" has no egress profile: set the label; Deployment "web" is odd'
        )
        assert two.warnings == ()

    def test_the_words_are_made_once_per_decision(self) -> None:
        """The response, the decision log and an Event all ask for them."""
        decision = denied((finding(), finding("host-network", Severity.ADVICE, reason="is odd")))
        assert decision.warnings is decision.warnings
        assert decision.message is decision.message
        assert decision.said == (decision.message, decision.warnings)

    def test_many_findings_give_six_warnings(self) -> None:
        many = tuple(
            finding(severity=Severity.ADVICE, subject=Subject("container", str(i)))
            for i in range(9)
        )
        assert len(allowed(findings=many).warnings) == MAX_WARNINGS

    def test_details_are_json_ready(self) -> None:
        f = finding(detail=detail(label="a/b", names=("x", "y"), count=2, gone=None))
        assert f.details() == {"label": "a/b", "names": ["x", "y"], "count": 2}
        assert f.get("count") == 2
        assert f.get("gone") is None


class TestWhatTheCoreFinds:
    """Each finding carries its check id, subject and machine-readable detail."""

    def test_a_missing_label(self, policy: Policy) -> None:
        decision = validate(request(workload("CronJob", name="report")), ns_labels(), policy)
        (f,) = decision.violations
        assert (f.check, f.severity, f.subject) == (
            "profile-label",
            Severity.VIOLATION,
            Subject("CronJob", "report"),
        )
        assert f.details() == {
            "problem": "missing",
            "label": PROFILE,
            "path": "spec.jobTemplate.spec.template.metadata.labels",
        }

    @pytest.mark.parametrize(
        ("obj", "problem"),
        [
            pytest.param(workload("Deployment", {PROFILE: "strpe"}), "undefined", id="undefined"),
            pytest.param(
                workload("Deployment", {"app": "x"}, own_labels={PROFILE: "stripe"}),
                "not-on-pods",
                id="not-on-pods",
            ),
        ],
    )
    def test_what_is_wrong_with_the_label_is_in_the_detail(
        self, obj: dict[str, Any], problem: str, policy: Policy
    ) -> None:
        (f,) = validate(request(obj), ns_labels(), policy).violations
        assert f.get("problem") == problem

    def test_a_namespace_label_typo_names_the_namespace_in_the_detail(self, policy: Policy) -> None:
        decision = validate(
            request(workload("Pod", {PROFILE: "none"})), {MODE: "enforcing", INJECT: "nope"}, policy
        )
        notes = [f for f in decision.findings if f.check == "namespace-labels"]
        assert [(f.get("label"), f.get("value"), f.get("used")) for f in notes] == [
            (MODE, "enforcing", "enforce"),
            (INJECT, "nope", "networkpolicy"),
        ]
        assert all(f.get("namespace") == "payments" for f in notes)

    def test_a_proxy_conflict_names_the_container_as_subject(self, policy: Policy) -> None:
        obj = pod({PROFILE: "none"})
        obj["spec"]["containers"][0]["env"] = [{"name": "HTTPS_PROXY", "value": "http://own"}]
        decision = mutate(request(obj), ns_labels("enforce", "proxy"), policy)
        (f,) = decision.findings
        assert (f.check, f.subject) == ("proxy-env", Subject("container", "app"))
        assert f.get("variables") == ("HTTPS_PROXY",)

    def test_warn_mode_adds_the_defined_profiles_once_per_policy(self, policy: Policy) -> None:
        first = validate(request(workload("Deployment")), ns_labels("warn"), policy)
        second = validate(request(workload("Job")), ns_labels("warn"), policy)
        (a,) = [f for f in first.findings if f.check == "defined-profiles"]
        (b,) = [f for f in second.findings if f.check == "defined-profiles"]
        assert a is b


def test_the_documented_check_ids_are_the_registered_ones() -> None:
    """docs/offline-checks.md lists every id a program may match on, and no other."""
    doc = (PACKAGE.parent / "docs" / "offline-checks.md").read_text()
    table = doc.split("### Findings and their check ids")[1].split("\n## ")[0]
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert documented == set(registered())


def _package_modules() -> list[Any]:
    """Every module of the core, imported (where check ids are registered)."""
    import importlib
    import pkgutil

    import webhook.core

    return [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(webhook.core.__path__, "webhook.core.")
    ]
