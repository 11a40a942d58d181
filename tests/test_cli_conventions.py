"""What every command owes its user: `-o` is a format, user errors are one line naming the path
and what to do (exit 2, no traceback), `-n` wherever `--namespace` is taken, help text and
defaults on every option."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from webhook.cli.main import main


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], (word, lines[0])


# --- manifests: -o is a format, --output-dir a directory -------------------------------------


def test_manifests_o_is_a_format(tmp_path: Path) -> None:
    stream = cli("manifests", "-o", "yaml")
    assert stream.exit_code == 0
    assert next(iter(yaml.safe_load_all(stream.stdout)))["kind"] == "Namespace"
    listed = cli("manifests", "-o", "json")
    assert listed.exit_code == 0
    document = json.loads(listed.stdout)
    assert document["kind"] == "List"
    assert [o["kind"] for o in document["items"]] == [
        o["kind"] for o in yaml.safe_load_all(stream.stdout) if o
    ]
    assert cli("manifests").stdout == stream.stdout
    assert not (Path.cwd() / "yaml").exists()


def test_manifests_o_directory_says_output_dir(tmp_path: Path) -> None:
    result = cli("manifests", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert f"--output-dir {tmp_path / 'out'}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_manifests_output_dir_writes_the_tree(tmp_path: Path) -> None:
    result = cli("manifests", "--output-dir", str(tmp_path / "tree"))
    assert result.exit_code == 0
    assert (tmp_path / "tree" / "kustomization.yaml").is_file()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        pytest.param(lambda d: d / "a-file", ["a-file", "is a file"], id="a-file"),
        pytest.param(
            lambda d: d / "a-file" / "sub", ["a-file is a file", "--output-dir"], id="under"
        ),
        pytest.param(
            lambda d: Path("/proc/egress-guard"), ["/proc/egress-guard", "--output-dir"], id="proc"
        ),
    ],
)
def test_manifests_output_dir_that_cannot_be_written(tmp_path: Path, make, words) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a-file").write_text("x")
    one_line_error(cli("manifests", "--output-dir", str(make(tmp_path))), *words)


# --- certificates and serving: filesystem errors ---------------------------------------------


@pytest.mark.parametrize("command", [["certs", "generate"], ["certs", "client"]])
def test_certs_into_a_path_that_cannot_be_written(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "a-file").write_text("x")
    one_line_error(
        cli(*command, "--out", str(tmp_path / "a-file" / "certs")), "a-file is a file", "--out"
    )
    one_line_error(cli(*command, "--out", "/proc/egress-guard"), "/proc/egress-guard", "--out")


def test_serve_cert_dir_on_a_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    result = cli("serve", "--cluster", "none", "--cert-dir", str(tmp_path / "a-file"))
    one_line_error(result, "a-file is a file", "--cert-dir")
    result = cli("serve", "--cluster", "none", "--cert-dir", "/proc/egress-guard")
    one_line_error(result, "/proc/egress-guard", "--cert-dir")


# --- conventions -------------------------------------------------------------------------------


def all_commands() -> list[tuple[str, click.Command]]:
    group = main
    assert isinstance(group, click.Group)
    found: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            sub = click.Context(command)
            found += [
                (f"{name} {s}", c)
                for s in command.list_commands(sub)
                if (c := command.get_command(sub, s)) is not None
            ]
        else:
            found.append((name, command))
    return found


OWNED = {
    "check",
    "explain",
    "manifests",
    "serve",
    "certs generate",
    "certs client",
    "certs roll-ca",
    "certs inject-ca",
}
"""The commands these conventions are kept on here (the others have tests of their own)."""


@pytest.mark.parametrize("name", sorted(OWNED))
def test_every_option_has_help_and_says_its_default(name: str) -> None:
    command = dict(all_commands())[name]
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden or param.name == "help":
            continue
        assert param.help, f"{name} {param.opts}: no help text"
        if param.is_flag or param.count:
            continue
        says_default = "[default:" in param.help or param.show_default
        assert says_default or param.required, f"{name} {param.opts}: default not shown"


@pytest.mark.parametrize("name", sorted(OWNED))
def test_n_wherever_namespace_is_taken(name: str) -> None:
    command = dict(all_commands())[name]
    for param in command.params:
        if isinstance(param, click.Option) and "--namespace" in param.opts:
            assert "-n" in param.opts, name


def test_top_level_help_does_not_cut_descriptions_mid_phrase() -> None:
    result = cli("--help")
    assert result.exit_code == 0
    commands = result.stdout.split("Commands:", 1)[1].splitlines()
    for line in commands:
        if line.strip():
            assert not line.rstrip().endswith("..."), line


# --- YAML errors at the line of their cause -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        pytest.param("apiVersion: v1\nkind: Pod\nmetadata:\n\tname: x\n", 4, ["tab"], id="tab"),
        pytest.param(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x,\nspec:\n  containers: []\n",
            3,
            ["'{' opened here is not closed", "line 5"],
            id="brace",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: [a, b\n  name: x\nspec: {}\n",
            4,
            ["'[' opened here"],
            id="bracket",
        ),
    ],
)
def test_yaml_errors_point_at_their_cause(text: str, line: int, words: list[str]) -> None:
    result = CliRunner().invoke(main, ["check", "-n", "payments"], input=text)
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: <stdin>:{line}: is not valid YAML: "), first
    for word in words:
        assert word in first
