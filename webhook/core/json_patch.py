"""JSONPatch (RFC 6902): operations built against the paths changed, never a whole-object diff,
and applied to an object as the API server applies a mutating webhook's answer (offline review).

egress-guard only ever emits `add` operations, so that is all `apply_patch` applies; anything
else is refused rather than guessed at.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
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


class PatchError(ValueError):
    """The patch does not apply to the object."""


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply_patch(obj: Mapping[str, Any], ops: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A patched copy of `obj` (the original is left untouched)."""
    patched: dict[str, Any] = copy.deepcopy(dict(obj))
    for op in ops:
        if op.get("op") != "add":
            raise PatchError(f"only add operations are supported, not {op.get('op')!r}")
        path = str(op.get("path", ""))
        if not path.startswith("/"):
            raise PatchError(f"path {path!r} is not a JSON pointer")
        *parents, last = (_unescape(token) for token in path[1:].split("/"))
        target: Any = patched
        for token in parents:
            target = _child(target, token, path)
        value = copy.deepcopy(op.get("value"))
        if isinstance(target, dict):
            target[last] = value
        elif isinstance(target, list):
            if last == "-":
                target.append(value)
            else:
                target.insert(_index(last, len(target), path), value)
        else:
            raise PatchError(f"{path}: the parent is neither an object nor an array")
    return patched


def _child(target: Any, token: str, path: str) -> Any:
    if isinstance(target, dict):
        if token not in target:
            raise PatchError(f"{path}: {token!r} does not exist")
        return target[token]
    if isinstance(target, list):
        return target[_index(token, len(target) - 1, path)]
    raise PatchError(f"{path}: cannot descend into a scalar at {token!r}")


def _index(token: str, highest: int, path: str) -> int:
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"{path}: {token!r} is not an array index")
    index = int(token)
    if index > highest:
        raise PatchError(f"{path}: index {index} is out of range")
    return index
