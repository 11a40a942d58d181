"""Kubernetes objects (and egress-guard's reports) as YAML text the way people write them: block
style, indented lists, multi-line strings (the embedded policy file) as literal blocks, no
anchors. One dumper for everything egress-guard writes as YAML: `manifests`, `render`, `check`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """SafeDumper with literal blocks for multi-line strings, indented lists, no aliases."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True  # a shared selector is written out each time, never as &id001 / *id001


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def _plain(value: Any) -> Any:
    """Mappings and tuples as dicts and lists, which the safe dumper knows how to write."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def dump(document: Mapping[str, Any] | list[Any], *, sort_keys: bool = False) -> str:
    """One YAML document: keys in the order built, or sorted (reports, for stable diffs)."""
    return yaml.dump(
        _plain(document),
        Dumper=_Dumper,
        sort_keys=sort_keys,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )


def dump_documents(documents: Iterable[Mapping[str, Any]], comment: str = "") -> str:
    """A YAML stream of these documents, each after `---`, under an optional comment header."""
    parts = [f"# {line}".rstrip() for line in comment.splitlines()] if comment else []
    for document in documents:
        parts.append("---")
        parts.append(dump(document).rstrip("\n"))
    return "\n".join(parts) + "\n"
