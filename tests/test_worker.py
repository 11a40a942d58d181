"""The gunicorn worker's frozen settings read exactly what gunicorn's own lookup reads."""

from __future__ import annotations

from pathlib import Path

from gunicorn.config import Config

from webhook.config.settings import ServeSettings
from webhook.serving.certs import CertFiles
from webhook.serving.server import gunicorn_options
from webhook.serving.worker import WebhookWorker, freeze_settings


def configured(tmp_path: Path) -> Config:
    cfg = Config()
    settings = ServeSettings(cert_dir=tmp_path, workers=1, threads=2)
    for key, value in gunicorn_options(settings, CertFiles(tmp_path)).items():
        cfg.set(key, value)
    return cfg


def test_frozen_settings_equal_gunicorn_lookups(tmp_path: Path) -> None:
    cfg = configured(tmp_path)
    before = {name: getattr(cfg, name) for name in cfg.settings}
    freeze_settings(cfg)
    assert all(name in vars(cfg) for name in cfg.settings)
    for name, value in before.items():
        frozen = getattr(cfg, name)
        assert frozen == value or (frozen is value), name
    # Properties named like settings still answer as gunicorn's code expects.
    assert cfg.worker_class is WebhookWorker
    assert cfg.is_ssl == str(tmp_path / "tls.crt")
    assert cfg.threads == 2
    assert cfg.keepalive == 120


def test_no_request_header_may_rewrite_the_scheme_or_the_path(tmp_path: Path) -> None:
    cfg = configured(tmp_path)
    assert cfg.secure_scheme_headers == {}
    assert cfg.forwarder_headers == []


def test_batched_decision_lines_are_all_written_in_order_by_shutdown() -> None:
    import io
    import logging

    from webhook.http.logs import BatchedStreamHandler

    stream = io.StringIO()
    handler = BatchedStreamHandler(stream, interval_s=60)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("egress_guard.test_batched")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for index in range(5):
            logger.info("line %d", index)
        assert stream.getvalue() == ""  # batched: nothing written yet
        logger.warning("urgent")  # a warning writes the batch at once, in order
        assert stream.getvalue().splitlines() == [*(f"line {i}" for i in range(5)), "urgent"]
        logger.info("last")
        handler.close()  # what logging.shutdown does at exit
        assert stream.getvalue().splitlines()[-1] == "last"
    finally:
        logger.removeHandler(handler)
