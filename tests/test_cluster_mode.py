"""Which cluster egress-guard talks to: one resolution for `serve`, `reconcile` and `certs`."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.config.settings import CLUSTER_MODES, resolve_cluster_mode


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Not in a pod, no KUBECONFIG, and a home without ~/.kube/config."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_the_modes_are_the_flags_choices() -> None:
    assert CLUSTER_MODES == ("auto", "none", "in-cluster", "kubeconfig")


def test_auto_without_a_cluster_is_none(nowhere: Path) -> None:
    assert resolve_cluster_mode("auto") == "none"


def test_auto_in_a_pod_is_the_service_account(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert resolve_cluster_mode("auto") == "in-cluster"
    assert resolve_cluster_mode("auto", context="kind-dev") == "kubeconfig"


def test_auto_finds_a_kubeconfig_in_the_environment_or_home(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = nowhere / "config"
    config.write_text("apiVersion: v1\n")
    monkeypatch.setenv("KUBECONFIG", f"{nowhere / 'absent'}:{config}")
    assert resolve_cluster_mode("auto") == "kubeconfig"
    monkeypatch.delenv("KUBECONFIG")
    assert resolve_cluster_mode("auto") == "none"
    (nowhere / ".kube").mkdir()
    (nowhere / ".kube" / "config").write_text("apiVersion: v1\n")
    assert resolve_cluster_mode("auto") == "kubeconfig"


def test_an_explicit_mode_is_kept_and_naming_a_kubeconfig_means_it(nowhere: Path) -> None:
    assert resolve_cluster_mode("none", kubeconfig="k") == "none"
    assert resolve_cluster_mode("in-cluster") == "in-cluster"
    assert resolve_cluster_mode("in-cluster", kubeconfig=Path("k")) == "kubeconfig"
    assert resolve_cluster_mode("kubeconfig") == "kubeconfig"
