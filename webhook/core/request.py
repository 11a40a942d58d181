"""The parts of an AdmissionRequest the core reads, as one immutable value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.raw_object import section


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
    object: Mapping[str, Any] | None = None
    old_object: Mapping[str, Any] | None = None
    user: str = ""
    """Who makes the request (userInfo.username): `system:serviceaccount:<ns>:<name>` for a
    service account. Empty where no one does (`check` over files)."""
    groups: tuple[str, ...] = ()
    """The groups the API server authenticated the user in (userInfo.groups)."""

    @property
    def object_name(self) -> str:
        """The name to show a person: the request's, or the object's, or its generateName."""
        if self.name:
            return self.name
        metadata = section(self.object, "metadata")
        name = metadata.get("name")
        if isinstance(name, str) and name:
            return name
        generate = metadata.get("generateName")
        return f"{generate}<generated>" if isinstance(generate, str) and generate else "<unnamed>"
