"""The parts of an AdmissionRequest the core reads, as one immutable value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

JsonObject = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """An admission request as the API server describes it (`admission.k8s.io/v1`).

    `object` and `old_object` are the raw decoded JSON: the core reads them, never copies or
    rewrites them, so that patches are computed against exactly what the API server sent.
    """

    uid: str
    kind: str
    operation: str
    namespace: str = ""
    name: str = ""
    group: str = ""
    version: str = ""
    sub_resource: str = ""
    dry_run: bool = False
    object: JsonObject | None = None
    old_object: JsonObject | None = None

    @property
    def object_name(self) -> str:
        """The name to show a person: the request's, or the object's, or its generateName."""
        if self.name:
            return self.name
        metadata = _mapping(self.object, "metadata")
        name = metadata.get("name")
        if isinstance(name, str) and name:
            return name
        generate = metadata.get("generateName")
        return f"{generate}<generated>" if isinstance(generate, str) and generate else "<unnamed>"


def _mapping(parent: Any, key: str) -> Mapping[str, Any]:
    value = parent.get(key) if type(parent) is dict else None
    return value if type(value) is dict else {}
