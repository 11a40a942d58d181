"""The mutation report: the score of a scope, and survivors matched to the documented ones by
function and change (mutant numbers move whenever the code does)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import mutation_report

MUTATED = """
def x_pick__mutmut_orig(a, b):
    return a if a else b

def x_pick__mutmut_1(a, b):
    return a if not a else b

def x_pick__mutmut_2(a, b=None):
    return a if a else b

def x_pick__mutmut_3(a, b):
    return None
"""


@pytest.fixture
def mutants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    module = tmp_path / "mutants" / "webhook" / "core" / "pick.py"
    module.parent.mkdir(parents=True)
    module.write_text(MUTATED)
    other = tmp_path / "mutants" / "webhook" / "cli" / "other.py"
    other.parent.mkdir(parents=True)
    other.write_text("def x_f__mutmut_orig():\n    pass\n")
    codes = {
        "webhook.core.pick.x_pick__mutmut_1": 1,
        "webhook.core.pick.x_pick__mutmut_2": 0,
        "webhook.core.pick.x_pick__mutmut_3": 0,
    }
    (module.parent / "pick.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    (other.parent / "other.py.meta").write_text(
        json.dumps({"exit_code_by_key": {"webhook.cli.other.x_f__mutmut_1": 0}})
    )
    return tmp_path


def test_the_score_counts_only_the_scope(mutants: Path) -> None:
    counts, survivors = mutation_report.results("webhook.core")
    assert counts == {"killed": 1, "survived": 2}
    assert [(s.function, s.change) for s in survivors] == [
        ("webhook.core.pick.pick", "- def pick(a, b): / + def pick(a, b=None):"),
        ("webhook.core.pick.pick", "- return a if a else b / + return None"),
    ]


@pytest.mark.parametrize("code", [36, -24, 24, 152])
def test_a_run_stopped_by_its_cpu_limit_is_a_timeout_and_caught(
    mutants: Path, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = mutants / "mutants" / "webhook" / "core" / "pick.py.meta"
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    codes["webhook.core.pick.x_pick__mutmut_1"] = code
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    counts, _ = mutation_report.results("webhook.core")
    assert counts == {"timeout": 1, "survived": 2}
    mutation_report.main(["--scope", "webhook.core"])
    assert "33.3% of 3 mutants caught" in capsys.readouterr().out


def test_undocumented_survivors_fail_and_documented_ones_pass(
    mutants: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mutation_report.main(["--scope", "webhook.core"]) == 0, "without --strict: a report"
    assert mutation_report.main(["--scope", "webhook.core", "--strict"]) == 1
    assert "undocumented survivor webhook.core.pick.x_pick__mutmut_3" in capsys.readouterr().out
    doc = mutants / "docs" / "mutation-testing.md"
    doc.parent.mkdir()
    doc.write_text(
        "### webhook.core.pick.pick\n\n"
        "- `- def pick(a, b): / + def pick(a, b=None):`: b is always given\n"
        "- `- return a if a else b / + return None`: nothing reads the result\n"
        "- `- return a / + return b`: killed since\n"
    )
    assert mutation_report.main(["--scope", "webhook.core", "--strict"]) == 0
    out = capsys.readouterr().out
    assert "33.3% of 3 mutants caught" in out
    assert "documented but caught now" in out and "return b" in out


def test_a_score_under_the_minimum_fails(mutants: Path) -> None:
    assert mutation_report.main(["--scope", "webhook.core", "--min-score", "50"]) == 1


def test_the_skeleton_lists_the_entries_to_explain(
    mutants: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutation_report.main(["--scope", "webhook.core", "--skeleton"])
    out = capsys.readouterr().out
    assert "### webhook.core.pick.pick" in out
    assert "- `- return a if a else b / + return None`: " in out


def test_without_mutants_it_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert mutation_report.main([]) == 2
    assert "mutmut run" in capsys.readouterr().err
