"""JSONPatch (RFC 6902) operations built against the paths changed, never a whole-object diff."""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class PatchOp(TypedDict):
    """One JSONPatch operation; egress-guard only ever adds."""

    op: Literal["add"]
    path: str
    value: Any


def escape(token: str) -> str:
    """Escape one reference token of a JSON pointer (RFC 6901): `~` first, then `/`."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    """Build a JSON pointer from raw keys and indices."""
    return "".join("/" + escape(str(token)) for token in tokens)


def add(path: str, value: Any) -> PatchOp:
    return {"op": "add", "path": path, "value": value}
