"""Reading Kubernetes manifests for the offline commands: files, directories, stdin.

Multi-document YAML, JSON, `kind: List` (and typed lists such as `PodList`) and Helm output with
`# Source:` comments are read. Whatever cannot be read becomes an `InputProblem` that names the
file and line; the rest of the input is still read, so one broken file never hides the others.
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import yaml

from webhook.core.raw_object import section

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"
STDIN_NAME = "<stdin>"
MAX_LIST_DEPTH = 4
"""A List inside a List is unwrapped, but not without end."""

TOO_DEEP = "is nested too deeply to be a Kubernetes object"

_HELM_SOURCE = re.compile(r"^# Source: (?P<source>\S.*?)\s*$", re.MULTILINE)
_DOCUMENT_START = re.compile(r"^---(?:[ \t]|$)", re.MULTILINE)

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ManifestLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Safe YAML as kubectl reads it: timestamps stay strings and every key becomes a string."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[str, Any]:
    loader.flatten_mapping(node)
    mapping: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, dict | list):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping or list is used as a key", key_node.start_mark
            )
        mapping[_key_text(key)] = loader.construct_object(value_node, deep=True)
    return mapping


def _key_text(key: Any) -> str:
    """Keys as JSON has them: YAML's `true`, `1` or `null` keys become "true", "1", "null"."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


def _construct_as_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    """Timestamps and binary stay the text they are in JSON (binary: base64, a Secret's data)."""
    text = str(loader.construct_scalar(node))
    return "".join(text.split()) if node.tag.endswith(":binary") else text


_ManifestLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_ManifestLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_as_text)
_ManifestLoader.add_constructor("tag:yaml.org,2002:binary", _construct_as_text)


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where an object was read: file, line of its first key, and, for Helm output, the template."""

    path: str
    line: int
    document: int
    """1-based position of the YAML document in the file."""
    item: int | None = None
    """0-based position in the `items` of a List, when the object came from one."""
    helm_source: str | None = None

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}"
        if self.helm_source:
            text += f" ({self.helm_source})"
        return text

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"file": self.path, "line": self.line, "document": self.document}
        if self.item is not None:
            data["item"] = self.item
        if self.helm_source:
            data["helmSource"] = self.helm_source
        return data


@dataclass(frozen=True, slots=True)
class InputObject:
    """One Kubernetes object from the input (a mapping with apiVersion and kind)."""

    source: SourceRef
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def api_version(self) -> str:
        return str(self.obj["apiVersion"])

    @property
    def metadata(self) -> Mapping[str, Any]:
        return section(self.obj, "metadata")


@dataclass(frozen=True, slots=True)
class InputProblem:
    """Something in the input that could not be read as a Kubernetes object."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"file": self.path, "message": self.message}
        if self.line:
            data["line"] = self.line
        return data


@dataclass(slots=True)
class Inputs:
    """Everything read: the objects in input order, the problems, and how many files were read."""

    manifests: list[InputObject] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)
    files: int = 0


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file to read, or standard input (`path` is None)."""

    path: Path | None
    name: str


def find_files(paths: Iterable[str]) -> tuple[list[InputFile], list[InputProblem]]:
    """Expand the paths given: files as they are, directories recursively (sorted, hidden entries
    skipped, *.yaml/*.yml/*.json only), `-` for standard input (once)."""
    files: list[InputFile] = []
    problems: list[InputProblem] = []
    seen: set[str] = set()

    def add(item: InputFile) -> None:
        if item.name not in seen:
            seen.add(item.name)
            files.append(item)

    for given in paths:
        if given == STDIN:
            add(InputFile(None, STDIN_NAME))
            continue
        path = Path(given)
        if path.is_dir():
            found = sorted(
                candidate
                for candidate in path.rglob("*")
                if candidate.suffix.lower() in MANIFEST_SUFFIXES
                and candidate.is_file()
                and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
            )
            if not found:
                problems.append(InputProblem(given, None, "no *.yaml, *.yml or *.json files here"))
            for candidate in found:
                add(InputFile(candidate, str(candidate)))
        elif path.exists():
            add(InputFile(path, given))
        else:
            problems.append(InputProblem(given, None, "no such file or directory"))
    return files, problems


def read_file(
    item: InputFile, stdin: IO[bytes] | None = None
) -> tuple[str | None, InputProblem | None]:
    """The text of a file (or of stdin), or the problem that prevented reading it."""
    try:
        data = (stdin or sys.stdin.buffer).read() if item.path is None else item.path.read_bytes()
    except OSError as err:
        return None, InputProblem(item.name, None, f"cannot be read: {err.strerror or err}")
    if b"\x00" in data[:8192]:
        return None, InputProblem(item.name, None, "is a binary file, not YAML or JSON")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        return None, InputProblem(item.name, line, "is not UTF-8 text")


def parse_text(text: str, name: str, *, json_first: bool) -> Iterator[InputObject | InputProblem]:
    """The objects in one file's text, and the problems met on the way."""
    if json_first:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as err:
            if name.lower().endswith(".json"):
                yield InputProblem(name, err.lineno, f"is not valid JSON: {err.msg}")
                return
        else:
            yield from _objects(document, SourceRef(name, 1, 1), None, 0, 0)
            return
    yield from _yaml_documents(text, name)


def _yaml_documents(text: str, name: str) -> Iterator[InputObject | InputProblem]:
    """Documents of a YAML stream. After a syntax error, reading resumes at the next `---`."""
    helm = [(match.start(), match.group("source")) for match in _HELM_SOURCE.finditer(text)]
    helm_lines = [text.count("\n", 0, start) for start, _ in helm]
    offset_line = 0
    offset_char = 0
    document = 0
    while True:
        loader = _ManifestLoader(text[offset_char:])
        previous_end = -1
        try:
            while loader.check_node():
                node = loader.get_node()
                document += 1
                if node is None:
                    continue
                start = offset_line + node.start_mark.line
                index = bisect.bisect_right(helm_lines, start) - 1
                helm_source = (
                    helm[index][1] if index >= 0 and helm_lines[index] > previous_end else None
                )
                previous_end = offset_line + node.end_mark.line
                source = SourceRef(name, start + 1, document, helm_source=helm_source)
                try:
                    value = loader.construct_document(node)
                except yaml.YAMLError as err:
                    yield _yaml_problem(err, name, text, offset_line)
                    continue
                except RecursionError:
                    yield InputProblem(name, start + 1, TOO_DEEP)
                    continue
                yield from _objects(value, source, node, offset_line, 0)
            return
        except (yaml.YAMLError, RecursionError) as err:
            if isinstance(err, yaml.YAMLError):
                problem = _yaml_problem(err, name, text, offset_line)
                after = problem.line
            else:  # no mark to go by: the document after the last one read
                line = offset_line + previous_end + 2 if previous_end >= 0 else offset_line + 1
                problem = InputProblem(name, line, TOO_DEEP)
                after = line + 1
            yield problem
            resume = _next_document_start(text, offset_char, after)
            if resume is None:
                return
            offset_line = text.count("\n", 0, resume)
            offset_char = resume
        finally:
            loader.dispose()


def _next_document_start(text: str, offset_char: int, after_line: int | None) -> int | None:
    """The position of the first `---` line after `after_line` (1-based), if any."""
    start = offset_char
    if after_line is not None:
        start = max(start, _position_of_line(text, after_line))
    match = _DOCUMENT_START.search(text, start)
    if match is None:
        return None
    if match.start() == offset_char:
        match = _DOCUMENT_START.search(text, match.end())
    return match.start() if match is not None else None


def _position_of_line(text: str, line: int) -> int:
    """The character position where 1-based `line` starts."""
    position = 0
    for _ in range(line - 1):
        position = text.find("\n", position)
        if position < 0:
            return len(text)
        position += 1
    return position


def _line_text(text: str, line: int) -> str:
    start = _position_of_line(text, line)
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


def _yaml_problem(err: yaml.YAMLError, name: str, text: str, offset_line: int) -> InputProblem:
    """The error at the line of its cause: an unclosed bracket where it was opened (PyYAML marks
    where it gave up, often lines later), with a hint for tabs in indentation."""
    problem_mark = getattr(err, "problem_mark", None)
    context_mark = getattr(err, "context_mark", None)
    mark = problem_mark or context_mark
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    message = f"{context}: {problem}" if context else problem
    if context_mark is not None and context and context.startswith("while parsing a flow"):
        opened = _line_text(text, offset_line + context_mark.line + 1)[context_mark.column :][:1]
        closer = {"{": "}", "[": "]"}.get(opened)
        if closer is not None and problem_mark is not None:
            mark = context_mark
            message = (
                f"the {opened!r} opened here is not closed with {closer!r} (PyYAML gave up at line "
                f"{offset_line + problem_mark.line + 1}: {problem})"
            )
    line = offset_line + mark.line + 1 if mark is not None else None
    if (
        line is not None
        and "\t" in _line_text(text, line)[: max(mark.column + 1, 1) if mark else 1]
    ):
        message += " (a tab in the indentation? YAML indents with spaces only)"
    if line is not None and "{{" in _line_text(text, line):
        message += " (an unrendered template? render it first, e.g. with helm template)"
    return InputProblem(name, line, f"is not valid YAML: {message}")


def _objects(
    value: Any, source: SourceRef, node: yaml.Node | None, offset_line: int, depth: int
) -> Iterator[InputObject | InputProblem]:
    """The Kubernetes objects in one document: the document itself, or a List's items.

    `node` is the document's YAML node (None for JSON), whose marks count lines from
    `offset_line`: it gives each List item its own line.
    """
    if value is None:
        return
    if not isinstance(value, dict):
        what = "a list" if isinstance(value, list) else f"a {type(value).__name__}"
        yield InputProblem(
            source.path,
            source.line,
            f"is {what}, not a Kubernetes object (a mapping with apiVersion and kind)",
        )
        return
    kind = value.get("kind")
    items = value.get("items")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
        if depth >= MAX_LIST_DEPTH:
            yield InputProblem(source.path, source.line, "Lists nested too deeply")
            return
        item_kind = kind.removesuffix("List") if kind != "List" else None
        item_nodes = _item_nodes(node)
        for index, item in enumerate(items):
            if item_kind and isinstance(item, dict):
                item.setdefault("kind", item_kind)
                if isinstance(value.get("apiVersion"), str):
                    item.setdefault("apiVersion", value["apiVersion"])
            item_node = item_nodes[index] if index < len(item_nodes) else None
            line = offset_line + item_node.start_mark.line + 1 if item_node else source.line
            item_source = SourceRef(
                source.path,
                line,
                source.document,
                item=index if source.item is None else source.item,
                helm_source=source.helm_source,
            )
            yield from _objects(item, item_source, item_node, offset_line, depth + 1)
        return
    missing = [key for key in ("apiVersion", "kind") if not isinstance(value.get(key), str)]
    if missing or not value["kind"] or not value["apiVersion"]:
        yield InputProblem(
            source.path,
            source.line,
            f"is not a Kubernetes object: {' and '.join(missing) or 'kind or apiVersion'} not set",
        )
        return
    yield InputObject(source, value)


def _item_nodes(node: yaml.Node | None) -> list[yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "items":
            return list(value.value) if isinstance(value, yaml.SequenceNode) else []
    return []


def read_inputs(
    files: Iterable[InputFile], stdin: IO[bytes] | None = None, inputs: Inputs | None = None
) -> Inputs:
    """Read every file into `inputs` (a new one unless given)."""
    inputs = inputs or Inputs()
    for item in files:
        inputs.files += 1
        text, problem = read_file(item, stdin)
        if problem is not None:
            inputs.problems.append(problem)
            continue
        assert text is not None
        json_first = item.name.lower().endswith(".json") or (
            item.path is None and text.lstrip()[:1] in ("{", "[")
        )
        for entry in parse_text(text, item.name, json_first=json_first):
            if isinstance(entry, InputObject):
                inputs.manifests.append(entry)
            else:
                inputs.problems.append(entry)
    return inputs
