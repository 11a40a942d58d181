"""Build a Kustomize directory: with `kubectl kustomize` where kubectl exists, otherwise with a
small Python reading of the features deploy/ uses (resources, components, strategic merge patches
of metadata). The Python path is checked against kubectl wherever both are available."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]
SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "components", "patches"}


def kubectl() -> str | None:
    return shutil.which("kubectl")


def build_with_kubectl(directory: Path) -> list[Doc]:
    binary = kubectl()
    assert binary is not None
    result = subprocess.run(
        [binary, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _load(path: Path) -> list[Doc]:
    assert path.is_file(), f"{path} is listed but missing"
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _key(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    metadata = doc.get("metadata", {})
    return str(doc["kind"]), str(metadata.get("namespace", "")), str(metadata["name"])


def _merge(target: Any, patch: Any) -> Any:
    if isinstance(target, dict) and isinstance(patch, dict):
        merged = dict(target)
        for key, value in patch.items():
            merged[key] = _merge(target.get(key), value)
        return merged
    return patch


def _kustomization(directory: Path) -> Doc:
    document = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(document, dict)
    unknown = set(document) - SUPPORTED_KEYS
    assert not unknown, f"{directory}: the Python build does not know {sorted(unknown)}"
    return document


def _apply(directory: Path, kustomization: Doc, docs: list[Doc]) -> list[Doc]:
    for entry in kustomization.get("components", []):
        component = (directory / entry).resolve()
        spec = _kustomization(component)
        assert spec["kind"] == "Component"
        docs = _apply(component, spec, [*docs, *_resources(component, spec)])
    for entry in kustomization.get("patches", []):
        for patch in _load(directory / entry["path"]):
            matches = [i for i, doc in enumerate(docs) if _key(doc) == _key(patch)]
            assert len(matches) == 1, f"patch {_key(patch)} matches {len(matches)} objects"
            docs[matches[0]] = _merge(docs[matches[0]], patch)
    return docs


def _resources(directory: Path, kustomization: Doc) -> list[Doc]:
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            docs += build_in_python(path)
        else:
            assert path.is_relative_to(directory), f"{entry} lies outside {directory}"
            docs += _load(path)
    return docs


def build_in_python(directory: Path) -> list[Doc]:
    kustomization = _kustomization(directory)
    return _apply(directory, kustomization, _resources(directory, kustomization))


def build(directory: Path) -> list[Doc]:
    return build_with_kubectl(directory) if kubectl() else build_in_python(directory)


def by_key(docs: list[Doc]) -> dict[tuple[str, str, str], Doc]:
    keyed = {_key(doc): doc for doc in docs}
    assert len(keyed) == len(docs), "two objects share kind, namespace and name"
    return keyed
