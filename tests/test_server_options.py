"""How `serve` configures gunicorn: the draining worker, the metrics hook, the heartbeat dir."""

from __future__ import annotations

from pathlib import Path

from gunicorn.util import load_class

from webhook.config.settings import ServeSettings
from webhook.serving.certs import CertFiles
from webhook.serving.graceful import DrainingThreadWorker
from webhook.serving.metrics_dir import mark_worker_dead
from webhook.serving.server import close_app, gunicorn_options


def test_workers_drain_on_stop_and_dead_workers_are_reported(tmp_path: Path) -> None:
    options = gunicorn_options(ServeSettings(), CertFiles(tmp_path))
    assert issubclass(load_class(options["worker_class"]), DrainingThreadWorker)
    assert options["child_exit"] is mark_worker_dead
    assert options["worker_exit"] is close_app
    assert options["keepalive"] > 90  # the API server keeps idle connections for 90 s


def test_the_worker_tmp_dir_is_configurable(tmp_path: Path) -> None:
    settings = ServeSettings(worker_tmp_dir=tmp_path / "heartbeat")
    assert gunicorn_options(settings, CertFiles(tmp_path))["worker_tmp_dir"] == str(
        tmp_path / "heartbeat"
    )


def test_certificate_paths_are_not_resolved_through_symlinks(tmp_path: Path) -> None:
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "tls.crt").write_text("x")
    (tmp_path / "tls.crt").symlink_to("..data/tls.crt")
    options = gunicorn_options(ServeSettings(), CertFiles(tmp_path))
    assert options["certfile"] == str(tmp_path / "tls.crt")


def test_an_exiting_worker_closes_what_its_app_opened() -> None:
    """gunicorn's worker_exit hook reaches the app the worker served: queued denial Events are
    written, watches stopped and the cluster connection closed before the process ends."""
    from types import SimpleNamespace

    from webhook.admission.controller import AdmissionController
    from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
    from webhook.config.policy_file import PolicyStore
    from webhook.http.app import create_app

    closed: list[str] = []
    store = PolicyStore(None)
    controller = AdmissionController(
        store, StaticNamespaceSource(store), ReportingNetworkPolicyApplier()
    )
    app = create_app(controller, close=lambda: closed.append("closed"))
    close_app(None, SimpleNamespace(wsgi=app))
    assert closed == ["closed"]
    close_app(None, SimpleNamespace())  # a worker that never loaded its app: nothing to do

    def broken() -> None:
        raise RuntimeError("already gone")

    close_app(None, SimpleNamespace(wsgi=create_app(controller, close=broken)))  # logged only
