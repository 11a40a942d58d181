"""`egress-guard render` (policies for GitOps) and `egress-guard explain` (the reasoning)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from builders import MODE, PROFILE, pod, workload
from click.testing import CliRunner, Result
from openapi_schema import assert_schema_valid

from webhook.cli.main import main


def cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def rendered(result: Result) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(result.stdout) if d]


# --- render ---------------------------------------------------------------------------------


def test_render_without_profiles_gives_default_deny_and_every_profile() -> None:
    result = cli("render", "-n", "payments")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# NetworkPolicies egress-guard ensures in namespace payments")
    policies = rendered(result)
    assert [p["metadata"]["name"] for p in policies] == [
        "egress-guard-default-deny",
        "egress-guard-profile-internal",
        "egress-guard-profile-none",
        "egress-guard-profile-stripe",
        "egress-guard-profile-web-via-proxy",
    ]
    for policy in policies:
        assert policy["metadata"]["namespace"] == "payments"
        assert_schema_valid(policy)
    assert "allows host api.stripe.com, which no NetworkPolicy can express" in result.stderr


def test_render_selected_profiles_matches_what_check_would_create(tmp_path: Path) -> None:
    result = cli("render", "-n", "payments", "--profile", "stripe")
    assert result.exit_code == 0
    obj = workload("Deployment", {PROFILE: "stripe"})
    checked = cli(
        "check",
        "-f",
        "-",
        "-n",
        "payments",
        "-o",
        "json",
        "--show-generated",
        stdin=json.dumps(obj),
    )
    generated = json.loads(checked.stdout)["items"][0]["generated"]["networkPolicies"]
    assert rendered(result) == generated


def test_under_inject_all_only_profiles_that_use_the_proxy_reach_it() -> None:
    """A route to the proxy for every profile would let one that allows nothing reach every
    host the proxy serves."""
    none = rendered(cli("render", "-n", "shop", "--profile", "none"))
    assert "egress" not in none[1]["spec"], "DNS only, even where the namespace injects all"
    stripe = rendered(cli("render", "-n", "shop", "--profile", "stripe"))
    assert stripe[1]["spec"]["egress"][-1]["ports"] == [{"protocol": "TCP", "port": 3128}]
    plain = rendered(cli("render", "-n", "payments", "--profile", "stripe"))
    assert all(
        rule["ports"] != [{"protocol": "TCP", "port": 3128}] for rule in plain[1]["spec"]["egress"]
    ), "host names reach the proxy only where the namespace injects its variables"
    forced = rendered(cli("render", "-n", "payments", "--profile", "stripe", "--inject", "all"))
    assert forced[1]["spec"] == stripe[1]["spec"]


def test_render_json_is_a_list() -> None:
    result = cli("render", "-n", "payments", "--profile", "internal", "-o", "json")
    document = json.loads(result.stdout)
    assert document["kind"] == "List"
    assert [i["kind"] for i in document["items"]] == ["NetworkPolicy", "NetworkPolicy"]


def test_render_refuses_unknown_profiles() -> None:
    result = cli("render", "-n", "payments", "--profile", "strpe")
    assert result.exit_code == 2
    assert 'profile "strpe" is not defined (did you mean "stripe"?)' in result.stderr


def test_render_needs_a_namespace() -> None:
    result = cli("render")
    assert result.exit_code == 2
    assert "--namespace" in result.stderr


def test_render_refuses_an_exempt_namespace() -> None:
    result = cli("render", "-n", "kube-system")
    assert result.exit_code == 2
    assert "exempt" in result.stderr
    assert result.stdout == ""


# --- explain --------------------------------------------------------------------------------


def test_explain_a_denied_workload_step_by_step_with_the_fix() -> None:
    obj = workload("CronJob", {PROFILE: "strpe"}, name="report")
    result = cli("explain", "-n", "payments", stdin=yaml.safe_dump(obj))
    assert result.exit_code == 1
    text = result.stdout
    assert text.startswith("CronJob/report in namespace payments (<stdin>:1)")
    assert (
        "1. Namespace payments: egress-guard.io/inject=networkpolicy, egress-guard.io/mode=enforce"
        in text
    )
    assert "(labels from the policy file's namespaces table)" in text
    labels_path = "spec.jobTemplate.spec.template.metadata.labels"
    assert f"2. Pod labels ({labels_path}): egress-guard.io/profile=strpe" in text
    assert "[FAIL] profile label:" in text
    assert "[ ok ] host network" in text
    assert "4. Verdict: DENIED (403): kubectl apply fails with" in text
    assert "5. Injected: nothing" in text
    snippet = text.split("What to change:")[1]
    assert "  jobTemplate:\n" in snippet
    assert "egress-guard.io/profile: stripe" in snippet
    assert "stripe         Payment gateway" in snippet


def test_explain_tells_the_servers_suggestion_and_none_where_the_server_has_none() -> None:
    """`explain` shows the findings the server gives: it never guesses a profile the server
    would not suggest."""
    for value, expected in (("web-via-prxy", "web-via-proxy"), ("zzz", "<profile>")):
        obj = workload("Deployment", {PROFILE: value}, name="api")
        text = cli("explain", "-n", "payments", stdin=yaml.safe_dump(obj)).stdout
        server = cli("check", "-f", "-", "-n", "payments", "-o", "json", stdin=json.dumps(obj))
        (item,) = json.loads(server.stdout)["items"]
        assert item["message"] in text
        assert f"egress-guard.io/profile: {expected}" in text.split("What to change:")[1]
        if expected == "<profile>":
            assert "did you mean" not in text
        else:
            assert f'did you mean "{expected}"' in item["message"]


def test_explain_an_allowed_workload_lists_what_would_be_injected() -> None:
    result = cli("explain", "-n", "shop", stdin=json.dumps(pod({PROFILE: "stripe"}, name="p")))
    assert result.exit_code == 0
    text = result.stdout
    assert "4. Verdict: ALLOWED" in text
    default_deny = "- NetworkPolicy egress-guard-default-deny: every pod: no egress but DNS"
    assert f"{default_deny}, to namespace kube-system" in text
    profile = "- NetworkPolicy egress-guard-profile-stripe: pods of this profile may also reach"
    assert f"{profile} 34.210.129.0/24 on 443/TCP" in text
    assert "- the Pod's container app: HTTP_PROXY, http_proxy" in text
    assert "would ensure" not in text, "the offline report of created policies is not a warning"
    assert "nothing: the workload is admitted as it is" in text


def test_explain_an_unmanaged_namespace_says_how_to_opt_in() -> None:
    result = cli("explain", "-n", "demo", stdin=yaml.safe_dump(workload("Deployment", {})))
    assert result.exit_code == 0
    assert "not managed (no egress-guard.io/mode label)" in result.stdout
    assert "kubectl label namespace demo egress-guard.io/mode=warn" in result.stdout


def test_explain_warn_mode_and_host_network_advice(tmp_path: Path) -> None:
    obj = workload("DaemonSet", {PROFILE: "none"}, name="agent")
    obj["spec"]["template"]["spec"]["hostNetwork"] = True
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "ops",
            "labels": {MODE: "warn", "egress-guard.io/inject": "networkpolicy"},
        },
    }
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump_all([ns, {**obj, "metadata": {"name": "agent", "namespace": "ops"}}])
    )
    result = cli("explain", "-f", str(path))
    assert result.exit_code == 0
    assert "(labels from the Namespace object at" in result.stdout
    assert "[FAIL] host network:" in result.stdout, "a violation, which warn mode admits"
    fixes = result.stdout.split("What to change:")[1]
    assert 'host network: DaemonSet "agent" uses hostNetwork' in fixes
    assert "hostNetwork: true" in fixes, "the fix names the profile setting"


def test_explain_without_workloads_says_so() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    result = cli("explain", stdin=yaml.safe_dump(service))
    assert result.exit_code == 0
    assert "nothing to explain: no workloads in the input (Service)" in result.stdout
