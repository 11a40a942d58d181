"""Manifests as YAML text the way people write them: block style, keys in the order built,
multi-line strings (the embedded policy file) as literal blocks."""

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


def dump_documents(documents: Iterable[Mapping[str, Any]], comment: str = "") -> str:
    """A YAML stream of these documents, each after `---`, under an optional comment header."""
    parts = [f"# {line}".rstrip() for line in comment.splitlines()] if comment else []
    for document in documents:
        body = yaml.dump(
            dict(document),
            Dumper=_Dumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=4096,
        )
        parts.append("---")
        parts.append(body.rstrip("\n"))
    return "\n".join(parts) + "\n"


def load_documents(text: str) -> list[dict[str, Any]]:
    """The mappings of a YAML stream (empty documents skipped)."""
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]
