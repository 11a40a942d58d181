"""Validation of manifests against the Kubernetes OpenAPI schema that kubernetes-validate ships."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kubernetes_validate

KUBERNETES_VERSION = "1.31.0"
"""The oldest Kubernetes release egress-guard supports: what is valid there is valid later."""


def schema_errors(manifest: Mapping[str, Any], *, strict: bool = True) -> str | None:
    """None when the manifest is valid, otherwise the validator's first complaint.

    Strict schemas reject fields that do not exist, so a misspelt key fails here instead of being
    silently dropped by the API server.
    """
    try:
        kubernetes_validate.validate(dict(manifest), KUBERNETES_VERSION, strict=strict)
    except kubernetes_validate.ValidationError as err:
        return str(err).splitlines()[0]
    return None


def assert_schema_valid(manifest: Mapping[str, Any]) -> None:
    problem = schema_errors(manifest)
    name = manifest.get("metadata", {}).get("name", "?")
    assert problem is None, f"{manifest.get('kind')} {name}: {problem}"
