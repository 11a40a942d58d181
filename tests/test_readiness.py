"""/readyz from the composed server: ready at once without a cluster; with one, not before the
namespace cache is filled, and not while its watch has been down longer than its bound."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from local_apiserver import Fault, LocalApiServer

from webhook.config.settings import ServeSettings
from webhook.serving.compose import build_app, build_components, compose_app


def readiness(app: object) -> tuple[int, str]:
    reply = app.test_client().get("/readyz")  # type: ignore[attr-defined]
    return reply.status_code, reply.get_data(as_text=True)


def eventually(app: object, status: int, timeout_s: float = 5.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        found, text = readiness(app)
        if found == status:
            return text
        assert time.monotonic() < deadline, f"/readyz stayed {found}: {text}"
        time.sleep(0.05)


def test_without_a_cluster_ready_at_once() -> None:
    assert readiness(build_app(ServeSettings(cluster="none"))) == (200, "ok\n")


def test_with_a_cluster_ready_once_filled_and_not_while_the_watch_is_down(
    local_api: LocalApiServer, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr("webhook.cluster.kube.STALE_AFTER_S", 0.5)
    local_api.add_fault(Fault(verb="list", resource="namespaces", delay_s=0.5))
    settings = ServeSettings(cluster="kubeconfig")
    components = build_components(settings)
    try:
        app = compose_app(settings, components)
        status, text = readiness(app)
        assert (status, text.startswith("not ready: the namespace cache is not filled yet")) == (
            503,
            True,
        )
        eventually(app, 200)
        local_api.go_down()
        text = eventually(app, 503)
        assert "the namespace watch has been down for" in text
        assert "refused the connection" in text
        local_api.come_up()
        eventually(app, 200)
    finally:
        components.close()
