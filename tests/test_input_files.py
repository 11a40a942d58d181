"""Reading manifests for the offline commands: YAML streams, JSON, Lists, Helm output, directories,
and input that cannot be read (named by file and line, without hiding the rest)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from webhook.cli.input_files import (
    InputFile,
    InputObject,
    InputProblem,
    find_files,
    parse_text,
    read_inputs,
)


def parse(text: str, name: str = "in.yaml") -> tuple[list[InputObject], list[InputProblem]]:
    entries = list(parse_text(text, name, json_first=name.endswith(".json")))
    return (
        [e for e in entries if isinstance(e, InputObject)],
        [e for e in entries if isinstance(e, InputProblem)],
    )


POD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers: []\n"


def test_multi_document_yaml_gives_each_object_its_line_and_document() -> None:
    text = "---\n" + POD.format(name="a") + "---\n# a comment\n" + POD.format(name="b")
    manifests, problems = parse(text)
    assert problems == []
    assert [m.metadata["name"] for m in manifests] == ["a", "b"]
    assert [m.source.line for m in manifests] == [2, 10]
    assert [m.source.document for m in manifests] == [1, 2]
    assert str(manifests[1].source) == "in.yaml:10"


def test_empty_documents_are_skipped_silently() -> None:
    manifests, problems = parse("---\n---\n# only a comment\n---\n" + POD.format(name="a"))
    assert problems == []
    assert [m.metadata["name"] for m in manifests] == ["a"]
    assert manifests[0].source.document == 3


def test_helm_source_comments_name_the_template_of_each_object() -> None:
    text = (
        "---\n# Source: chart/templates/a.yaml\n"
        + POD.format(name="a")
        + "---\n"
        + POD.format(name="b")
        + "---\n# Source: chart/templates/c.yaml\n"
        + POD.format(name="c")
    )
    manifests, _ = parse(text)
    assert [m.source.helm_source for m in manifests] == [
        "chart/templates/a.yaml",
        None,
        "chart/templates/c.yaml",
    ]
    assert str(manifests[0].source) == "in.yaml:3 (chart/templates/a.yaml)"


def test_a_list_is_unwrapped_and_each_item_keeps_its_own_line() -> None:
    text = """\
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: {name: s}
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: d}
"""
    manifests, problems = parse(text)
    assert problems == []
    assert [(m.kind, m.source.line, m.source.item) for m in manifests] == [
        ("Service", 4, 0),
        ("Deployment", 7, 1),
    ]


def test_typed_list_items_get_kind_and_api_version_from_the_list() -> None:
    text = "apiVersion: v1\nkind: PodList\nitems:\n  - metadata: {name: p}\n    spec: {}\n"
    manifests, problems = parse(text)
    assert problems == []
    assert (manifests[0].kind, manifests[0].api_version) == ("Pod", "v1")


def test_json_objects_and_json_lists() -> None:
    single, _ = parse('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j"}}', "p.json")
    assert [m.metadata["name"] for m in single] == ["j"]
    listed, _ = parse(
        '{"apiVersion": "v1", "kind": "List", "items": ['
        '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}},'
        '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "y"}}]}',
        "l.json",
    )
    assert [(m.metadata["name"], m.source.item) for m in listed] == [("x", 0), ("y", 1)]


def test_invalid_json_names_the_line() -> None:
    manifests, problems = parse('{\n  "kind": "Pod",\n  oops\n}', "bad.json")
    assert manifests == []
    assert problems[0].line == 3
    assert str(problems[0]).startswith("bad.json:3: is not valid JSON")


def test_a_broken_document_is_reported_and_the_documents_around_it_are_still_read() -> None:
    text = (
        POD.format(name="before")
        + "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: 'broken\n  labels: [\n"
        + "---\n"
        + POD.format(name="after")
    )
    manifests, problems = parse(text)
    assert [m.metadata["name"] for m in manifests] == ["before", "after"]
    assert len(problems) == 1
    assert problems[0].path == "in.yaml"
    assert problems[0].line is not None and 7 <= problems[0].line <= 13
    assert "is not valid YAML" in problems[0].message
    assert manifests[1].source.line == 14


def test_an_unrendered_template_is_named_as_such() -> None:
    text = "apiVersion: v1\nkind: ReplicationController\nspec:\n  replicas: {{replicas}}\n"
    _, problems = parse(text)
    assert problems[0].line == 4
    assert "unrendered template" in problems[0].message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("- a\n- b\n", "is a list, not a Kubernetes object", id="sequence"),
        pytest.param("just text\n", "is a str, not a Kubernetes object", id="scalar"),
        pytest.param("metadata: {name: x}\n", "apiVersion and kind not set", id="no-kind"),
        pytest.param("apiVersion: v1\nkind: ''\n", "kind or apiVersion", id="empty-kind"),
    ],
)
def test_documents_that_are_not_objects_are_problems(text: str, expected: str) -> None:
    manifests, problems = parse(text)
    assert manifests == []
    assert expected in problems[0].message
    assert problems[0].line == 1


def test_timestamps_stay_strings_and_keys_become_strings_as_in_json() -> None:
    text = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\n"
        "  creationTimestamp: 2024-01-02T03:04:05Z\n  annotations:\n    true: yes\n    1: one\n"
    )
    manifests, _ = parse(text)
    metadata = manifests[0].metadata
    assert metadata["creationTimestamp"] == "2024-01-02T03:04:05Z"
    assert metadata["annotations"] == {"true": True, "1": "one"}


def test_directories_are_read_recursively_in_order_skipping_hidden_and_other_files(
    tmp_path: Path,
) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()
    for name in ("b/z.yaml", "a.yml", "c.json", ".git/x.yaml", "README.md", "b/.hidden.yaml"):
        (tmp_path / name).write_text("{}")
    files, problems = find_files([str(tmp_path)])
    assert problems == []
    assert [Path(f.name).relative_to(tmp_path).as_posix() for f in files] == [
        "a.yml",
        "b/z.yaml",
        "c.json",
    ]


def test_missing_paths_and_empty_directories_are_problems_but_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "ok.yaml").write_text(POD.format(name="ok"))
    files, problems = find_files(
        [str(tmp_path / "nope.yaml"), str(tmp_path / "empty"), str(tmp_path / "ok.yaml")]
    )
    assert [p.message for p in problems] == [
        "no such file or directory",
        "no *.yaml, *.yml or *.json files here",
    ]
    inputs = read_inputs(files)
    assert [m.metadata["name"] for m in inputs.manifests] == ["ok"]


def test_binary_and_non_utf8_files_are_problems(tmp_path: Path) -> None:
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01\x02")
    (tmp_path / "latin1.yaml").write_bytes(b"apiVersion: v1\nkind: Pod\n# caf\xe9\n")
    files, _ = find_files([str(tmp_path)])
    inputs = read_inputs(files)
    assert inputs.manifests == []
    messages = {Path(p.path).name: (p.line, p.message) for p in inputs.problems}
    assert messages["bin.yaml"] == (None, "is a binary file, not YAML or JSON")
    assert messages["latin1.yaml"] == (3, "is not UTF-8 text")


def test_standard_input_is_read_once_as_yaml_or_json() -> None:
    stdin = io.BytesIO(b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "in"}}')
    inputs = read_inputs([InputFile(None, "<stdin>")], stdin)
    assert [(m.metadata["name"], m.source.path) for m in inputs.manifests] == [("in", "<stdin>")]
    stdin = io.BytesIO(("---\n" + POD.format(name="y1") + "---\n" + POD.format(name="y2")).encode())
    inputs = read_inputs([InputFile(None, "<stdin>")], stdin)
    assert [m.metadata["name"] for m in inputs.manifests] == ["y1", "y2"]
    files, _ = find_files(["-", "-"])
    assert len(files) == 1


def test_a_document_nested_too_deeply_is_a_problem_and_the_others_are_read() -> None:
    deep = "[" * 5000 + "]" * 5000
    text = "---\n" + POD.format(name="a") + f"---\napiVersion: v1\nkind: Pod\nspec: {deep}\n"
    text += "---\n" + POD.format(name="c")
    manifests, problems = parse(text)
    assert [m.metadata["name"] for m in manifests] == ["a", "c"]
    assert [(p.line, p.message) for p in problems] == [
        (9, "is nested too deeply to be a Kubernetes object")
    ]


def test_binary_values_stay_base64_text_as_in_json() -> None:
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
    text += "data:\n  k: !!binary |\n    aGVs\n    bG8=\n"
    manifests, _ = parse(text)
    assert manifests[0].obj["data"] == {"k": "aGVsbG8="}
