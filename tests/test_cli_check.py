"""`egress-guard check`: every input form, output format and exit code, and the namespace labels
it assumes."""

from __future__ import annotations

import base64
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from builders import INJECT, MODE, PROFILE, apply_patch, pod, review_document, workload
from click.testing import CliRunner, Result

from webhook.admission.controller import AdmissionController
from webhook.cli.main import main
from webhook.cli.progress import wants_progress
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import PolicyStore
from webhook.http.app import create_app


def run(*args: str, stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(main, ["check", *args], input=stdin)


def write(path: Path, *objects: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def service(name: str = "web") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {}}


def items(result: Result) -> list[dict[str, Any]]:
    document: dict[str, Any] = json.loads(result.stdout)
    found: list[dict[str, Any]] = document["items"]
    return found


def verdicts(result: Result) -> dict[str, str]:
    return {f"{i['kind']}/{i['name']}": i["verdict"] for i in items(result)}


LABELLED = {"app": "web", PROFILE: "stripe"}


# --- exit codes -----------------------------------------------------------------------------


def test_all_allowed_exits_0_with_a_table_and_a_summary(tmp_path: Path) -> None:
    path = write(tmp_path / "ok.yaml", workload("Deployment", LABELLED), service())
    result = run("-f", str(path), "--namespace", "payments")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "KIND/NAME", "VERDICT", "INJECTED", "REASONS"]
    assert lines[1].split()[:3] == ["payments", "Deployment/web", "allowed"]
    assert "egress-guard-profile-stripe" in lines[1]
    assert lines[-1] == (
        "1 workload in 1 file: 1 allowed, 0 denied, 0 warned, 0 audited; "
        "1 other object skipped (1 Service)"
    )
    assert result.stderr == ""


def test_a_denial_exits_1_and_names_the_reason(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", workload("Deployment", {"app": "web"}, name="api"))
    result = run("-f", str(path), "-n", "payments")
    assert result.exit_code == 1
    row = result.stdout.splitlines()[1]
    assert row.split()[:3] == ["payments", "Deployment/api", "denied"]
    assert "has no egress profile: set the label egress-guard.io/profile" in row
    assert '"api"' not in row, "the KIND/NAME column names the workload already"


def test_unreadable_input_alone_exits_2_and_names_file_and_line(tmp_path: Path) -> None:
    good = write(tmp_path / "good.yaml", workload("Deployment", LABELLED))
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n")
    result = run("-f", str(good), "-f", str(bad), "-n", "payments")
    assert result.exit_code == 2
    assert f"error: {bad}:4: is not valid YAML: the '[' opened here" in result.stderr
    assert "Deployment/web" in result.stdout, "the readable file is still checked"
    assert result.stdout.splitlines()[-1].endswith("; 1 input error")


def test_a_denial_wins_over_unreadable_input(tmp_path: Path) -> None:
    denied = write(tmp_path / "denied.yaml", workload("Deployment", {}))
    result = run("-f", str(denied), "-f", str(tmp_path / "missing.yaml"), "-n", "payments")
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'missing.yaml'}: no such file or directory" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([], "give manifests with -f", id="no-input"),
        pytest.param(
            ["-f", "x.yaml", "--action", "mutate"], "--action goes with --review", id="action"
        ),
        pytest.param(["-f", "x.yaml", "-n", "Bad_Name"], "not a valid namespace", id="namespace"),
        pytest.param(["-f", "x.yaml", "--mode", "strict"], "'strict' is not one of", id="mode"),
        pytest.param(["--review", "r.json", "-f", "x.yaml"], "takes no -f", id="review-and-f"),
        pytest.param(["--review", "r.json", "-o", "junit"], "use -o json", id="review-junit"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_bad_policy_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text("profiles:\n  web:\n    allow:\n      - cidr: 10.0.0.0/33\n")
    path = write(tmp_path / "w.yaml", workload("Deployment", LABELLED))
    result = run("-f", str(path), "--config", str(config))
    assert result.exit_code == 2
    assert "line 4" in result.stderr and "cidr" in result.stderr
    assert "Traceback" not in result.output


def test_no_objects_at_all_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing here\n")
    result = run("-f", str(tmp_path / "empty.yaml"))
    assert result.exit_code == 2
    assert "no Kubernetes objects found" in result.stderr


# --- input forms ----------------------------------------------------------------------------


def test_stdin_yaml_and_json_and_lists(tmp_path: Path) -> None:
    stream = yaml.safe_dump_all([workload("Deployment", LABELLED, name="a"), service()])
    assert verdicts(run("-f", "-", "-n", "payments", "-o", "json", stdin=stream)) == {
        "Deployment/a": "allowed"
    }
    as_list = {"apiVersion": "v1", "kind": "List", "items": [workload("Job", {}, name="j")]}
    result = run("-f", "-", "-n", "payments", "-o", "json", stdin=json.dumps(as_list))
    assert verdicts(result) == {"Job/j": "denied"}
    assert items(result)[0]["source"] == {"file": "<stdin>", "line": 1, "document": 1, "item": 0}


def test_directories_are_checked_recursively(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    write(tmp_path / "a" / "one.yaml", workload("Deployment", LABELLED, name="one"))
    (tmp_path / "a" / "b" / "two.json").write_text(json.dumps(pod(LABELLED, name="two")))
    (tmp_path / "notes.txt").write_text("not a manifest")
    result = run("-f", str(tmp_path), "-n", "payments", "-o", "json")
    assert result.exit_code == 0
    assert [i["source"]["file"] for i in items(result)] == [
        str(tmp_path / "a" / "b" / "two.json"),
        str(tmp_path / "a" / "one.yaml"),
    ]
    assert json.loads(result.stdout)["summary"]["files"] == 2


def test_helm_output_names_the_template_of_each_workload() -> None:
    stream = (
        "---\n# Source: shop/templates/web.yaml\n"
        + yaml.safe_dump(workload("Deployment", {}))
        + "---\n# Source: shop/templates/svc.yaml\n"
        + yaml.safe_dump(service())
    )
    result = run("-f", "-", "-n", "payments", "-o", "json", stdin=stream)
    assert items(result)[0]["source"]["helmSource"] == "shop/templates/web.yaml"
    assert items(result)[0]["source"]["line"] == 3
    table = run("-f", "-", "-n", "payments", stdin=stream)
    assert table.stdout.splitlines()[-1].endswith("1 other object skipped (1 Service)")


def test_generate_name_is_shown_as_the_api_server_would_name_it() -> None:
    obj = pod(LABELLED)
    del obj["metadata"]["name"]
    obj["metadata"]["generateName"] = "job-"
    result = run("-f", "-", "-n", "payments", "-o", "json", stdin=json.dumps(obj))
    assert items(result)[0]["name"] == "job-<generated>"


# --- namespace labels -----------------------------------------------------------------------


def test_the_namespace_comes_from_the_object_then_the_flag_then_default() -> None:
    own = workload("Deployment", {}, name="own")
    own["metadata"]["namespace"] = "staging"
    stream = yaml.safe_dump_all([own, workload("Deployment", {}, name="flagged")])
    result = run("-f", "-", "-n", "sandbox", "-o", "json", stdin=stream)
    found = {i["name"]: (i["namespace"], i["verdict"]) for i in items(result)}
    assert found == {"own": ("staging", "warned"), "flagged": ("sandbox", "audited")}
    result = run("-f", "-", "-o", "json", stdin=yaml.safe_dump(workload("Deployment", {})))
    assert items(result)[0]["namespace"] == "default"
    assert items(result)[0]["note"] == "namespace not managed"


def test_namespace_objects_in_the_input_supply_the_labels_over_flags_and_the_table() -> None:
    labelled = namespace("payments", **{MODE: "warn"})
    unlabelled = namespace("shop")
    stream = yaml.safe_dump_all(
        [
            labelled,
            unlabelled,
            {
                **workload("Deployment", {}, name="p"),
                "metadata": {"name": "p", "namespace": "payments"},
            },
            {
                **workload("Deployment", {}, name="s"),
                "metadata": {"name": "s", "namespace": "shop"},
            },
            workload("Deployment", {}, name="other"),
        ]
    )
    result = run("-f", "-", "-n", "demo", "--mode", "enforce", "-o", "json", stdin=stream)
    found = {i["name"]: i for i in items(result)}
    assert found["p"]["verdict"] == "warned"
    assert found["p"]["namespaceLabels"]["from"] == "the Namespace object at <stdin>:1"
    assert found["s"]["verdict"] == "allowed" and found["s"]["note"] == "namespace not managed"
    assert found["other"]["verdict"] == "denied"
    assert found["other"]["namespaceLabels"]["from"] == "--mode"
    assert json.loads(result.stdout)["summary"]["namespaces"] == 2


def test_flags_override_only_the_keys_they_set_in_the_policy_table() -> None:
    stream = yaml.safe_dump(workload("Deployment", {}))
    result = run("-f", "-", "-n", "shop", "--mode", "warn", "-o", "json", stdin=stream)
    labels = items(result)[0]["namespaceLabels"]
    assert labels["labels"] == {MODE: "warn", INJECT: "all"}
    assert labels["from"] == "--mode over the policy file's namespaces table"
    assert items(result)[0]["verdict"] == "warned"
    table = run("-f", "-", "-n", "shop", "-o", "json", stdin=stream)
    assert items(table)[0]["verdict"] == "denied"
    assert items(table)[0]["namespaceLabels"]["from"] == "the policy file's namespaces table"


def test_exempt_namespaces_are_allowed_even_under_enforce() -> None:
    obj = workload("DaemonSet", {})
    obj["metadata"]["namespace"] = "kube-system"
    result = run("-f", "-", "--mode", "enforce", "-o", "json", stdin=yaml.safe_dump(obj))
    assert result.exit_code == 0
    assert (items(result)[0]["verdict"], items(result)[0]["note"]) == (
        "allowed",
        "namespace exempt",
    )


# --- what would be injected -----------------------------------------------------------------


def test_pods_go_through_the_mutating_webhook_and_the_patched_pod_is_validated() -> None:
    result = run(
        "-f", "-", "-n", "shop", "-o", "json", "--show-generated", stdin=json.dumps(pod(LABELLED))
    )
    assert result.exit_code == 0
    item = items(result)[0]
    assert item["injected"]["proxyEnv"] == {
        "app": ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"]
    }
    assert item["injected"]["proxyEnvOn"] == "pod"
    patched = item["generated"]["patchedObject"]
    env = {e["name"]: e["value"] for e in patched["spec"]["containers"][0]["env"]}
    assert env["HTTPS_PROXY"].startswith("http://egress-proxy.")
    assert "egress-guard.io/proxy-injected" in patched["metadata"]["annotations"]
    names = [m["metadata"]["name"] for m in item["generated"]["networkPolicies"]]
    assert names == item["injected"]["networkPolicies"]
    assert names == ["egress-guard-default-deny", "egress-guard-profile-stripe"]


def test_workloads_with_templates_show_what_their_pods_would_get() -> None:
    result = run("-f", "-", "-n", "legacy", stdin=yaml.safe_dump(workload("Deployment", LABELLED)))
    row = result.stdout.splitlines()[1]
    assert "proxy env (its pods): app" in row


def test_show_generated_prints_each_policy_once_and_the_patched_pods(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        workload("Deployment", LABELLED, name="a"),
        workload("Deployment", LABELLED, name="b"),
        pod(LABELLED, name="p"),
    )
    result = run("-f", str(path), "-n", "shop", "--show-generated")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    stream = "\n".join(lines[lines.index("---") : -1])
    documents = [d for d in yaml.safe_load_all(stream) if d]
    kinds = [(d["kind"], d["metadata"]["name"]) for d in documents]
    assert kinds == [
        ("NetworkPolicy", "egress-guard-default-deny"),
        ("NetworkPolicy", "egress-guard-profile-stripe"),
        ("Pod", "p"),
    ]
    assert result.stdout.splitlines()[-1].startswith("3 workloads in 1 file")


# --- output formats -------------------------------------------------------------------------


MIXED = [
    workload("Deployment", LABELLED, name="ok"),
    workload("StatefulSet", {}, name="bad"),
    pod({PROFILE: "nope"}, name="typo"),
    service(),
]


def test_json_is_parseable_sorted_and_stable(tmp_path: Path) -> None:
    path = write(tmp_path / "mixed.yaml", *MIXED)
    first = run("-f", str(path), "-n", "payments", "-o", "json")
    second = run("-f", str(path), "-n", "payments", "-o", "json")
    assert first.exit_code == 1
    assert first.stdout == second.stdout
    document = json.loads(first.stdout)
    assert list(document) == ["inputErrors", "items", "notSent", "summary"]
    assert json.dumps(document, sort_keys=True, indent=2) == first.stdout.rstrip("\n")
    assert document["summary"] == {
        "allowed": 1,
        "audited": 0,
        "denied": 2,
        "unavailable": 0,
        "errored": 0,
        "exitCode": 1,
        "files": 1,
        "inputErrors": 0,
        "namespaces": 0,
        "notManaged": 0,
        "notManagedNamespaces": [],
        "exempt": 0,
        "notSent": {},
        "objects": 4,
        "skipped": 1,
        "skippedKinds": {"Service": 1},
        "warned": 0,
        "workloads": 3,
        "networkPolicies": 0,
    }
    bad = document["items"][1]
    assert (bad["kind"], bad["allowed"], bad["code"]) == ("StatefulSet", False, 403)
    assert bad["reasons"] and bad["message"] == bad["reasons"][0]
    (finding,) = bad["findings"]
    assert finding["check"] == "profile-label"
    assert finding["severity"] == "violation"
    assert finding["subject"] == {"kind": "StatefulSet", "name": bad["name"]}
    assert finding["detail"]["problem"] == "missing"
    assert finding["text"] == bad["message"]
    assert finding["hint"].startswith("set the label egress-guard.io/profile")


def test_yaml_carries_the_same_document_as_json(tmp_path: Path) -> None:
    path = write(tmp_path / "mixed.yaml", *MIXED)
    as_json = json.loads(run("-f", str(path), "-n", "staging", "-o", "json").stdout)
    as_yaml = run("-f", str(path), "-n", "staging", "-o", "yaml")
    assert as_yaml.exit_code == 0, "warn mode allows"
    assert yaml.safe_load(as_yaml.stdout) == as_json


def test_junit_is_xml_that_ci_systems_read(tmp_path: Path) -> None:
    path = write(tmp_path / "mixed.yaml", *MIXED)
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [\n")
    result = run("-f", str(path), "-f", str(broken), "-n", "payments", "-o", "junit")
    assert result.exit_code == 1
    assert result.stdout.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(result.stdout.split("\n", 1)[1])
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "2", "1")
    suites = {suite.get("name"): suite for suite in root.findall("testsuite")}
    assert set(suites) == {str(path), str(broken)}
    mixed = suites[str(path)]
    cases = mixed.findall("testcase")
    assert [c.get("name") for c in cases] == ["Deployment/ok", "StatefulSet/bad", "Pod/typo"]
    assert all(c.get("classname") == "egress-guard.payments" for c in cases)
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("type") == "denied"
    assert "has no egress profile" in (failure.get("message") or "")
    first_key_line = path.read_text().splitlines().index("kind: StatefulSet")  # apiVersion: above
    assert cases[1].get("file") == str(path) and cases[1].get("line") == str(first_key_line)
    error = suites[str(broken)].find("testcase/error")
    assert error is not None and error.get("type") == "InputError"
    for suite in root.findall("testsuite"):
        total = len(suite.findall("testcase"))
        assert suite.get("tests") == str(total)
        assert suite.get("failures") == str(len(suite.findall("testcase/failure")))


def test_junit_survives_control_characters_in_names() -> None:
    obj = workload("Deployment", {}, name="bell\u0007name")
    result = run("-f", "-", "-n", "payments", "-o", "junit", stdin=json.dumps(obj))
    root = ET.fromstring(result.stdout.split("\n", 1)[1])
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("name") == "Deployment/bell\ufffdname"


def test_warned_and_audited_rows_carry_their_reasons(tmp_path: Path) -> None:
    path = write(tmp_path / "w.yaml", workload("Deployment", {}))
    for namespace_name, verdict in (("staging", "warned"), ("sandbox", "audited")):
        result = run("-f", str(path), "-n", namespace_name)
        assert result.exit_code == 0
        cells = result.stdout.splitlines()[1].split(None, 4)
        assert cells[2] == verdict
        assert "has no egress profile" in cells[4]


# --- replaying a review ---------------------------------------------------------------------


def server_body(document: dict[str, Any], path: str) -> bytes:
    """What the Flask app answers, for the same static parts `serve --cluster none` uses."""
    policies = PolicyStore(None)
    controller = AdmissionController(
        policies, StaticNamespaceSource(policies), ReportingNetworkPolicyApplier()
    )
    client = create_app(controller).test_client()
    return client.post(path, data=orjson.dumps(document), content_type="application/json").data


@pytest.mark.parametrize(
    ("obj", "namespace_name", "action", "exit_code"),
    [
        pytest.param(workload("Deployment", {}), "payments", "validate", 1, id="denied"),
        pytest.param(workload("Deployment", LABELLED), "payments", "validate", 0, id="allowed"),
        pytest.param(workload("Deployment", {}), "staging", "validate", 0, id="warned"),
        pytest.param(pod(LABELLED), "shop", "mutate", 0, id="patched"),
        pytest.param(workload("Deployment", {}), "nowhere", "validate", 0, id="unmanaged"),
    ],
)
def test_review_replay_prints_exactly_what_the_server_sends(
    tmp_path: Path, obj: dict[str, Any], namespace_name: str, action: str, exit_code: int
) -> None:
    document = review_document(obj, namespace=namespace_name)
    path = tmp_path / "review.json"
    path.write_bytes(orjson.dumps(document))
    result = run("--review", str(path), "--action", action)
    assert result.exit_code == exit_code
    assert result.stdout.rstrip("\n").encode() == server_body(document, f"/{action}")


def test_review_replay_reads_yaml_and_stdin_and_renders_yaml() -> None:
    document = review_document(workload("Deployment", {}), namespace="payments", uid="u-1")
    result = run("--review", "-", "-o", "yaml", stdin=yaml.safe_dump(document))
    assert result.exit_code == 1
    response = yaml.safe_load(result.stdout)["response"]
    assert response["uid"] == "u-1" and response["allowed"] is False
    assert response["status"]["code"] == 403
    table = run("--review", "-", "-o", "table", stdin=yaml.safe_dump(document))
    assert table.stdout.startswith(
        "validate CREATE Deployment/web in namespace payments: denied (403)"
    )


def test_review_replay_honours_dry_run_and_mode_flags() -> None:
    document = review_document(workload("Deployment", LABELLED), namespace="demo", dryRun=True)
    result = run("--review", "-", "--mode", "enforce", stdin=json.dumps(document))
    response = json.loads(result.stdout)["response"]
    assert response["allowed"] is True
    assert response["warnings"][-1].startswith("egress-guard: dry run: would ensure")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            b'{"uid": "x", "kind": {"kind": "Pod"}}',
            "expected an AdmissionReview",
            id="bare-request",
        ),
        pytest.param(b'{"apiVersion": "v1", "kind": "Pod"}', "kind is 'Pod'", id="not-a-review"),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
            "request.uid is missing",
            id="no-uid",
        ),
        pytest.param(b"{nope", "is not valid", id="garbage"),
    ],
)
def test_review_replay_of_something_else_exits_2(content: bytes, message: str) -> None:
    result = run("--review", "-", stdin=content)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


# --- progress and width ---------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_a_terminal_only_and_only_for_many_files() -> None:
    assert wants_progress(FakeTerminal(), 25)
    assert not wants_progress(FakeTerminal(), 3)
    assert not wants_progress(io.StringIO(), 25)


def test_no_progress_output_when_piped(tmp_path: Path) -> None:
    for index in range(25):
        write(tmp_path / f"w{index:02}.yaml", workload("Deployment", LABELLED, name=f"w{index}"))
    result = run("-f", str(tmp_path), "-n", "payments", "-o", "json")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert json.loads(result.stdout)["summary"]["workloads"] == 25


def test_on_a_narrow_terminal_the_reason_goes_under_its_row_whole(tmp_path: Path) -> None:
    from webhook.cli.commands.check import read_all, review_inputs
    from webhook.cli.output_table import render_table
    from webhook.config.policy_file import load_policy

    path = write(
        tmp_path / "w.yaml", workload("Deployment", {}), workload("Deployment", LABELLED, name="ok")
    )
    report = review_inputs(read_all((str(path),)), load_policy(None), "payments", None, None)
    whole = render_table(report).splitlines()
    assert len(whole[1]) > 120 and whole[1].endswith("web-via-proxy")
    for width in (80, 120):
        lines = render_table(report, width=width).splitlines()
        assert all(len(line) <= width for line in lines[:-1]), lines
        assert lines[0].split() == ["NAMESPACE", "KIND/NAME", "VERDICT"]
        assert lines[1].split() == ["payments", "Deployment/web", "denied"]
        under = " ".join(line.strip() for line in lines[2:] if line.startswith("    "))
        # every word of the reason and of what is injected is there, in order
        reason = whole[1].split("   ")[-1].strip()
        assert reason in under
        assert "injected: netpol: egress-guard-default-deny, egress-guard-profile-stripe" in under
    wide = render_table(report, width=400).splitlines()
    assert wide == whole


def test_colour_on_a_terminal_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from webhook.cli.commands import check as check_module

    path = write(tmp_path / "w.yaml", workload("Deployment", {}))
    piped = run("-f", str(path), "-n", "payments")
    assert "\x1b[" not in piped.stdout
    monkeypatch.setattr(check_module, "terminal", lambda: (80, True))
    coloured = CliRunner().invoke(main, ["check", "-f", str(path), "-n", "payments"], color=True)
    assert "\x1b[31mdenied" in coloured.stdout
    assert all(len(click_unstyle(line)) <= 80 for line in coloured.stdout.splitlines()[:-1])
    staging = CliRunner().invoke(main, ["check", "-f", str(path), "-n", "staging"], color=True)
    assert "\x1b[33mwarned" in staging.stdout


def test_no_color_turns_colour_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from webhook.cli.commands import check as check_module

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(check_module.sys, "stdout", Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert check_module.terminal()[1] is False
    monkeypatch.delenv("NO_COLOR")
    assert check_module.terminal()[1] is True
    monkeypatch.setattr(check_module.sys, "stdout", io.StringIO())
    assert check_module.terminal() == (None, False)


def click_unstyle(text: str) -> str:
    import click

    return click.unstyle(text)


# --- namespaces that are not managed ----------------------------------------------------------


def test_unmanaged_namespaces_are_counted_apart_and_said(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        workload("Deployment", {}, name="a"),
        workload("Deployment", {}, name="b"),
    )
    result = run("-f", str(path))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[1].split()[:3] == ["default", "Deployment/a", "unmanaged"]
    assert lines[-1] == (
        "2 workloads in 1 file: 0 allowed, 0 denied, 0 warned, 0 audited; "
        "2 workloads in 1 unmanaged namespace (default): not checked"
    )
    assert result.stderr.startswith(
        "warning: egress-guard: 2 workloads not checked: namespace default is not managed; "
    )
    assert "--require-managed" in result.stderr
    document = json.loads(run("-f", str(path), "-o", "json").stdout)
    assert document["summary"]["notManaged"] == 2
    assert document["summary"]["notManagedNamespaces"] == ["default"]
    assert document["summary"]["allowed"] == 0
    assert [item["checked"] for item in document["items"]] == [False, False]


def test_unmanaged_workloads_are_skipped_in_junit_and_an_error_with_require_managed(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "w.yaml", workload("Deployment", {}, name="a"))
    plain = run("-f", str(path), "-o", "junit")
    assert plain.exit_code == 0
    root = ET.fromstring(plain.stdout.split("\n", 1)[1])
    assert (root.get("tests"), root.get("skipped"), root.get("failures")) == ("1", "1", "0")
    skipped = root.find("testsuite/testcase/skipped")
    assert skipped is not None and "namespace default is not managed" in skipped.get("message", "")
    strict = run("-f", str(path), "-o", "junit", "--require-managed")
    assert strict.exit_code == 2
    root = ET.fromstring(strict.stdout.split("\n", 1)[1])
    assert (root.get("errors"), root.get("skipped")) == ("1", "0")
    assert strict.stderr.startswith("error: egress-guard: 1 workload not checked")
    managed = run("-f", str(path), "-n", "shop", "--mode", "enforce", "--require-managed")
    assert managed.exit_code == 1, "checked, and denied"
    table = run("-f", str(path), "--require-managed")
    assert table.exit_code == 2


def test_exempt_namespaces_are_counted_apart_but_never_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "w.yaml", workload("Deployment", {}, name="a"))
    result = run("-f", str(path), "-n", "kube-system", "--mode", "enforce", "--require-managed")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].split()[2] == "exempt"
    assert "1 workload in exempt namespaces: not checked" in result.stdout


def test_helm_template_names_the_junit_file() -> None:
    stream = "---\n# Source: shop/templates/api.yaml\n" + yaml.safe_dump(
        workload("Deployment", {}, name="api")
    )
    result = run("-f", "-", "-n", "payments", "-o", "junit", stdin=stream)
    root = ET.fromstring(result.stdout.split("\n", 1)[1])
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("file") == "shop/templates/api.yaml"
    assert root.find("testsuite").get("name") == "<stdin>"  # type: ignore[union-attr]


def test_offline_commands_never_load_the_kubernetes_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from webhook.cli.main import main\n"
        "for name in ('check', 'render', 'explain'):\n"
        "    assert CliRunner().invoke(main, [name, '--help']).exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'gunicorn')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_pods_warnings_come_from_the_mutating_webhook_first_as_kubectl_shows_them(
    tmp_path: Path,
) -> None:
    """A Pod that sets its own proxy (a mutating warning) and lacks a profile in a warn namespace
    (validating warnings): check lists them in the API server's order."""
    config = tmp_path / "policy.yaml"
    example = Path(__file__).resolve().parents[1] / "webhook" / "data" / "policy.example.yaml"
    document = yaml.safe_load(example.read_text())
    document["namespaces"] = {"trial": {"mode": "warn", "inject": "proxy"}}
    config.write_text(yaml.safe_dump(document))
    obj = pod(spec={"containers": [{"name": "app", "env": [{"name": "HTTP_PROXY", "value": "x"}]}]})
    result = run(
        "-f", "-", "-n", "trial", "--config", str(config), "-o", "json", stdin=json.dumps(obj)
    )
    warnings = items(result)[0]["warnings"]
    policies = PolicyStore(config)
    controller = AdmissionController(
        policies, StaticNamespaceSource(policies), ReportingNetworkPolicyApplier()
    )
    client = create_app(controller).test_client()
    mutated = client.post(
        "/mutate",
        data=orjson.dumps(review_document(obj, namespace="trial")),
        content_type="application/json",
    ).get_json()["response"]
    patched = apply_patch(obj, orjson.loads(base64.b64decode(mutated["patch"])))
    validated = client.post(
        "/validate",
        data=orjson.dumps(review_document(patched, namespace="trial")),
        content_type="application/json",
    ).get_json()["response"]
    assert mutated["warnings"] and validated["warnings"]
    assert warnings == [*mutated["warnings"], *validated["warnings"]]
