"""How `serve` configures gunicorn: the draining worker, the metrics hook, the heartbeat dir."""

from __future__ import annotations

from pathlib import Path

from gunicorn.util import load_class

from webhook.config.settings import ServeSettings
from webhook.serving.certs import CertFiles
from webhook.serving.graceful import DrainingThreadWorker
from webhook.serving.metrics_dir import mark_worker_dead
from webhook.serving.server import gunicorn_options


def test_workers_drain_on_stop_and_dead_workers_are_reported(tmp_path: Path) -> None:
    options = gunicorn_options(ServeSettings(), CertFiles(tmp_path))
    assert issubclass(load_class(options["worker_class"]), DrainingThreadWorker)
    assert options["child_exit"] is mark_worker_dead
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
