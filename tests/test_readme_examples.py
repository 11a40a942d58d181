"""The documented examples stay true: the README's copy of the example policy is the file, and
every `egress-guard` command in the README's and docs' shell blocks parses (subcommand, options
and their values, as click checks them before running anything); those that need nothing but
manifests are run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml
from builders import workload
from click.testing import CliRunner

from webhook.cli.main import main

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", REPO / "docs" / "offline-checks.md"]
SHELL_BLOCK = re.compile(r"^ *```sh\n(.*?)^ *```", re.S | re.M)


def commands(path: Path) -> list[list[str]]:
    """Each `egress-guard ...` command of the file's sh blocks, as its arguments (after the
    program name), pipes and redirections left out."""
    found: list[list[str]] = []
    for block in SHELL_BLOCK.findall(path.read_text()):
        text = re.sub(r"\\\n\s*", " ", block)
        for whole in text.splitlines():
            line = whole.split(" #", 1)[0]
            for part in re.split(r"\||&&", line):
                if part.strip().startswith("egress-guard "):
                    words = shlex.split(part.split(">", 1)[0].split("<", 1)[0])
                    found.append(words[1:])
    return found


EXAMPLES = [(path.relative_to(REPO).as_posix(), args) for path in DOCS for args in commands(path)]


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) > 15


@pytest.mark.parametrize(("doc", "args"), EXAMPLES, ids=[" ".join(a) for _, a in EXAMPLES])
def test_every_documented_command_parses(doc: str, args: list[str]) -> None:
    group = main
    assert isinstance(group, click.Group)
    ctx = group.make_context("egress-guard", list(args), resilient_parsing=False)
    command: click.Command = group
    rest = list(args)
    while isinstance(command, click.Group):
        name, found, rest = command.resolve_command(ctx, rest)
        assert found is not None, f"{doc}: no command {name}"
        command = found
        ctx = command.make_context(name or "", list(rest), parent=ctx)


def test_the_readme_policy_is_the_example_file() -> None:
    text = (REPO / "README.md").read_text()
    start = text.index("```yaml\nlabelPrefix")
    block = text[start + len("```yaml\n") : text.index("```", start + 3)]
    example = (REPO / "deploy" / "policy.example.yaml").read_text()
    assert yaml.safe_load(block) == yaml.safe_load(example)


def test_the_check_examples_run_and_check_something(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check -f k8s/ ...` and the CI pipeline, on a directory of manifests: each workload is
    checked (none in an unmanaged namespace), and the CI form fails on a denial."""
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "api.yaml").write_text(
        yaml.safe_dump(workload("Deployment", {}, name="api"))
    )
    monkeypatch.chdir(tmp_path)
    ran = 0
    for doc, args in EXAMPLES:
        if args[:1] != ["check"] or "--review" in args:
            continue
        if "-f" in args and args[args.index("-f") + 1] == "-":
            stdin = (tmp_path / "k8s" / "api.yaml").read_text()
        else:
            stdin = None
        result = CliRunner().invoke(main, args, input=stdin)
        assert result.exit_code == 1, (doc, args, result.output)
        assert "not checked" not in result.output, (doc, args)
        ran += 1
    assert ran >= 3


def test_the_backend_examples_are_what_render_renders() -> None:
    """The README's worked Cilium and Istio objects (kind, name and spec) are the renderings of
    the example's `stripe` profile in namespace payments."""
    from webhook.config.policy_file import load_policy
    from webhook.core.backends import Backend
    from webhook.core.egress_objects import egress_intents
    from webhook.core.namespace import namespace_context

    text = (REPO / "README.md").read_text()
    section = text.split("## Host names: Cilium and Istio")[1].split("\n## ")[0]
    shown = [
        document
        for block in re.findall(r"^```yaml\n(.*?)^```", section, re.S | re.M)
        for document in yaml.safe_load_all(block)
        if document and "kind" in document
    ]
    assert {d["kind"] for d in shown} == {"CiliumNetworkPolicy", "Sidecar"}
    policy = load_policy(None).model_copy(update={"backends": [Backend.CILIUM, Backend.ISTIO]})
    context = namespace_context("payments", {policy.mode_label: "enforce"}, policy)
    (intent,) = egress_intents("payments", context, policy, "stripe")
    rendered = {(m["kind"], m["metadata"]["name"]): m["spec"] for m in intent.manifests}
    for document in shown:
        assert rendered[(document["kind"], document["metadata"]["name"])] == document["spec"]
