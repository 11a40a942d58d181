"""Render deploy/helm/egress-guard offline, as `helm template` would, with helm-python-sdk (Helm's
Go SDK in a shared library shipped in the wheel: no `helm` binary, no cluster, no network).

The renderer is a dev dependency (`pip install -c constraints.txt -e '.[dev]'`): where it is
missing, rendering fails and says how to install it, so the chart's tests never skip.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "egress-guard"
RELEASE = "egress-guard"
HOOK = "helm.sh/hook"
Doc = dict[str, Any]

INSTALL_HINT = (
    "the Helm renderer helm-python-sdk is not installed: "
    "pip install -c constraints.txt -e '.[dev]' (or `make test`, which does)"
)


class RenderError(Exception):
    """Helm refused the values or a template failed: its message."""


def _helm() -> Any:
    try:
        return importlib.import_module("helm_python")
    except ImportError as err:  # a failure, never a skip: CI installs .[dev]
        pytest.fail(f"{INSTALL_HINT} ({err})")


def render_files(values: Mapping[str, Any], namespace: str) -> dict[str, str]:
    """Each template's output (path -> text), NOTES.txt left out as `helm template` does."""
    helm = _helm()
    try:
        with helm.Chart.load(str(CHART)) as chart:
            rendered: dict[str, str] = chart.render(
                dict(values), name=RELEASE, namespace=namespace, is_install=True
            )
    except helm.HelmError as err:
        raise RenderError(str(err)) from None
    return {path: text for path, text in rendered.items() if not path.endswith("NOTES.txt")}


def render(values: Mapping[str, Any], namespace: str = "egress-guard") -> list[Doc]:
    """Every object the chart renders (hooks included), in template order."""
    return [
        doc
        for _, text in sorted(render_files(values, namespace).items())
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def is_hook(doc: Mapping[str, Any]) -> bool:
    return HOOK in doc.get("metadata", {}).get("annotations", {})
