"""Shared fixtures. Builders of objects and reviews live in builders.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from local_apiserver import LocalApiServer

from webhook.cluster.client import api_client
from webhook.config.policy_file import load_policy
from webhook.core.policy import Policy


@pytest.fixture(scope="session")
def policy() -> Policy:
    """The embedded example policy (profiles none, stripe, internal, web-via-proxy)."""
    return load_policy(None)


@pytest.fixture
def local_api() -> Iterator[LocalApiServer]:
    """A fresh local API server on a free loopback port (see local_apiserver.py), with the
    namespace egress-guard runs in; stopped when the test ends."""
    with LocalApiServer(max_lifetime_s=120) as api:
        api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "egress-guard"}})
        yield api


@pytest.fixture
def kubeconfig(local_api: LocalApiServer, tmp_path: Path) -> Path:
    """A kubeconfig file whose current context is `local_api`."""
    return local_api.kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kube(kubeconfig: Path) -> Iterator[client.ApiClient]:
    """The real Kubernetes client, talking to `local_api`."""
    api = api_client("kubeconfig", kubeconfig=str(kubeconfig))
    yield api
    api.close()
