"""`egress-guard flows`: golden outputs over hand-written fixtures (tests/flows: Hubble JSON lines
written from cilium's flow.proto, and a CSV), exit codes, and --suggest output that the real
policy loader accepts and that then declares what was seen.

Review a change in tests/golden/flows/, then accept it with

    EGRESS_GUARD_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_cli_flows.py
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from webhook.cli.flow_input import ReadStats, open_sources, read_flows
from webhook.cli.main import main
from webhook.config.policy_file import load_policy
from webhook.core.flow_matching import FlowAudit, workload_name

FLOWS = Path(__file__).parent / "flows"
GOLDEN = Path(__file__).parent / "golden" / "flows"
UPDATE = os.environ.get("EGRESS_GUARD_UPDATE_GOLDEN") == "1"
EXAMPLE = Path(__file__).parent.parent / "deploy" / "policy.example.yaml"
HUBBLE = str(FLOWS / "hubble.jsonl")
CSV = str(FLOWS / "flows.csv")


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["flows", "--config", str(EXAMPLE), *args], input=stdin)


@pytest.mark.parametrize(
    ("golden", "args"),
    [
        ("hubble.table.txt", ("-f", HUBBLE)),
        ("hubble.json", ("-f", HUBBLE, "-o", "json")),
        ("hubble.suggest.yaml", ("-f", HUBBLE, "--suggest")),
        ("csv.table.txt", ("-f", CSV)),
        ("csv.suggest.yaml", ("-f", CSV, "--suggest")),
    ],
)
def test_golden_outputs(golden: str, args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert result.stderr == ""
    text = result.stdout.replace(str(FLOWS), "tests/flows")
    path = GOLDEN / golden
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with EGRESS_GUARD_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{golden} changed: review, then accept with UPDATE"


def test_yaml_is_the_json_document() -> None:
    as_json = json.loads(run("-f", HUBBLE, "-o", "json").stdout)
    as_yaml = yaml.safe_load(run("-f", HUBBLE, "-o", "yaml").stdout)
    assert as_json == as_yaml
    assert as_json["summary"]["exitCode"] == 1


def test_all_declared_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text(
        "namespace,pod,destination_ip,port,protocol,dns_name,profile\n"
        "payments,checkout-7d4b9c8f6d-x2k9p,34.210.129.17,443,TCP,,stripe\n"
        "payments,checkout-7d4b9c8f6d-x2k9p,54.187.216.72,443,TCP,api.stripe.com,stripe\n"
    )
    result = run("-f", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "2 flow records in 1 file: 2 egress flows from 1 workload; all declared"
    )


def test_a_namespace_filter() -> None:
    result = run("-f", HUBBLE, "-n", "staging", "-o", "json")
    document = json.loads(result.stdout)
    assert [item["workload"] for item in document["items"]] == ["web"]
    assert document["summary"]["skipped"]["other namespace"] == 27
    assert run("-f", HUBBLE, "-n", "Not_A_Namespace").exit_code == 2


def test_standard_input() -> None:
    result = run("-f", "-", stdin=(FLOWS / "hubble.jsonl").read_text())
    assert result.exit_code == 1
    assert result.stdout == run("-f", HUBBLE).stdout


def test_unreadable_files_are_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run("-f", str(tmp_path / "missing.jsonl"))
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"error: {tmp_path / 'missing.jsonl'}: no such file\n"
    binary = tmp_path / "flows.bin"
    binary.write_bytes(b"\x1f\x00\x00\x00")
    result = run("-f", str(binary))
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {binary}: is a binary file, not flow records\n",
    )
    assert run().exit_code == 2


def test_malformed_lines_exit_2_unless_undeclared_egress_was_seen(tmp_path: Path) -> None:
    declared = "payments,checkout-7d4b9c8f6d-x2k9p,34.210.129.17,443,TCP,,stripe\n"
    undeclared = "payments,checkout-7d4b9c8f6d-x2k9p,34.210.129.17,80,TCP,,stripe\n"
    header = "namespace,pod,destination_ip,port,protocol,dns_name,profile\n"
    path = tmp_path / "f.csv"
    path.write_text(header + declared + "payments,x,1.2.3.4,eighty,TCP,,stripe\n")
    result = run("-f", str(path))
    assert result.exit_code == 2
    assert result.stderr == f"error: {path}:3: port 'eighty' is not a port number\n"
    assert result.stdout.splitlines()[-1].endswith("; all declared; 1 input error")
    path.write_text(header + undeclared + "payments,x,1.2.3.4,eighty,TCP,,stripe\n")
    assert run("-f", str(path)).exit_code == 1
    document = json.loads(run("-f", str(path), "-o", "json").stdout)
    assert document["inputErrors"] == [
        {"file": str(path), "line": 3, "message": "port 'eighty' is not a port number"}
    ]


def test_more_problems_than_are_shown_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text("nope\n" * 25)
    result = run("-f", str(path))
    assert result.exit_code == 2
    errors = result.stderr.splitlines()
    assert len(errors) == 21 and errors[-1] == "error: 5 more lines could not be read"


def test_suggest_as_json() -> None:
    document = json.loads(run("-f", HUBBLE, "--suggest", "-o", "json").stdout)
    assert sorted(document["profiles"]) == ["shop-api", "shop-frontend", "shop-nightly-report"]


@pytest.mark.parametrize("fixture", [HUBBLE, CSV])
def test_suggested_profiles_load_and_then_declare_what_was_seen(
    fixture: str, tmp_path: Path
) -> None:
    """Paste the suggestion under the example's profiles, load the file with the real loader,
    label each workload with its suggested profile: every flow that left is then declared."""
    suggested = yaml.safe_load(run("-f", fixture, "--suggest").stdout)["profiles"]
    example = yaml.safe_load(EXAMPLE.read_text())
    example["profiles"].update(suggested)
    merged = tmp_path / "policy.yaml"
    merged.write_text(yaml.safe_dump(example))
    policy = load_policy(merged)
    label = policy.profile_label
    by_workload = {}
    for name, profile in suggested.items():
        namespace, _, workload = profile["description"].partition(",")[0].partition("/")
        by_workload[(namespace, workload)] = name
    audit = FlowAudit(policy)
    stats = ReadStats()
    for seen in read_flows(open_sources((fixture,)), stats, profile_label=label):
        workload = seen.workload or workload_name(seen.pod, seen.labels)
        name = by_workload.get((seen.namespace, workload))
        audit.add(seen if name is None else replace(seen, labels={**seen.labels, label: name}))
    relabelled = [t for t in audit.workloads.values() if t.profile in suggested]
    assert len(relabelled) == len(suggested) > 0
    for tally in relabelled:
        leftover = {str(t): c for t, c in tally.undeclared.items()}
        assert all(c.dropped == c.flows for c in leftover.values()), leftover
