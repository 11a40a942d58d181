"""Reading a raw Kubernetes object (decoded JSON or YAML) in place, whatever it holds.

An AdmissionReview, a list from the API or a manifest may hold anything where a field is expected:
these return None, an empty mapping or an empty string instead of raising, and never copy, so
patches and comparisons stay about exactly what was sent. Decoded JSON objects are dicts: checking
`type(x) is dict` (not the Mapping ABC) keeps them cheap on the admission path, where they run a
dozen times per review.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

JsonObject = dict[str, Any]
"""A decoded JSON object: what the API server sends and answers."""

EMPTY: Mapping[str, Any] = MappingProxyType({})


def mapping_at(obj: Any, *path: str) -> Mapping[str, Any] | None:
    """The mapping at `path` inside `obj`, or None where the path is missing or not a mapping."""
    for key in path:
        if type(obj) is not dict:
            return None
        obj = obj.get(key)
    return obj if type(obj) is dict else None


def section(obj: Any, *path: str) -> Mapping[str, Any]:
    """The mapping at `path` inside `obj`, empty where there is none (`mapping_at`, written out:
    it runs a dozen times per review)."""
    for key in path:
        if type(obj) is not dict:
            return EMPTY
        obj = obj.get(key)
    return obj if type(obj) is dict else EMPTY


def text_at(obj: Any, *path: str) -> str:
    """The string at `path` inside `obj`, empty where there is none."""
    *parents, key = path
    value = section(obj, *parents).get(key)
    return value if isinstance(value, str) else ""


def where(obj: Any) -> tuple[str, str]:
    """(namespace, name) of an object, empty where not set."""
    metadata = section(obj, "metadata")
    namespace, name = metadata.get("namespace"), metadata.get("name")
    return (
        namespace if isinstance(namespace, str) else "",
        name if isinstance(name, str) else "",
    )
