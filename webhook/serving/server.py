"""gunicorn, configured as egress-guard runs in production: gthread workers over TLS, keep-alive."""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from webhook.config.settings import ServeSettings
from webhook.http.app import EXTENSION
from webhook.serving.certs import CertFiles
from webhook.serving.compose import build_app
from webhook.serving.graceful import DrainingArbiter
from webhook.serving.metrics_dir import mark_worker_dead
from webhook.serving.tls import context_for
from webhook.serving.worker import WORKER_CLASS


def logging_config(level: str) -> dict[str, Any]:
    """JSON lines on stderr for everything: gunicorn's own log, the app's, the decision log."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
    }
    decisions = {**handler, "class": "webhook.http.logs.BatchedStreamHandler"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "webhook.http.logs.JsonFormatter"}},
        "handlers": {"stderr": handler, "decisions": decisions},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "egress_guard.decision": {
                "level": level.upper(),
                "handlers": ["decisions"],
                "propagate": False,
            },
            "gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        },
    }


class GunicornLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger without the access log, which the decision log replaces.

    gunicorn builds every access-log line's fields before the log level can drop it, whenever a
    logging configuration is given (as here): about 30 µs of every review, spent on nothing.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def close_app(_arbiter: Any, worker: Any) -> None:
    """gunicorn's worker_exit hook, in the exiting worker: close what its app opened."""
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get(EXTENSION)
    if state is not None:
        try:
            state.close()
        except Exception:
            logging.getLogger(__name__).exception("closing the worker's app failed")


def gunicorn_options(settings: ServeSettings, certs: CertFiles) -> dict[str, Any]:
    # absolute(), not resolve(): a Secret volume's tls.crt is a symlink through `..data`, which
    # is swapped on renewal; pinning its target today would keep the reloader on a deleted file.
    cert, key = certs.tls_cert.absolute(), certs.tls_key.absolute()

    client_ca = settings.client_ca_file.absolute() if settings.client_ca_file else None

    def tls_context(_config: Any, _default_factory: Any) -> ssl.SSLContext:
        return context_for(cert, key, client_ca)

    options: dict[str, Any] = {
        "bind": [bind_address(settings.host, settings.port)],
        "workers": settings.workers,
        "worker_class": WORKER_CLASS,  # gthread: drains on stop, frozen settings
        "threads": settings.threads,
        "keepalive": settings.keepalive_s,
        "graceful_timeout": settings.graceful_timeout_s,
        "timeout": 30,
        "certfile": str(cert),
        "keyfile": str(key),
        "ssl_context": tls_context,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level,
        "logconfig_dict": logging_config(settings.log_level),
        "logger_class": GunicornLogger,
        "proc_name": "egress-guard",
        # No proxy stands between the API server and the webhook: no header may rewrite the
        # scheme or the path. With nothing to trust, every peer may be "trusted", which spares
        # parsing the peer's address on every request.
        "secure_scheme_headers": {},
        "forwarder_headers": "",
        "forwarded_allow_ips": "*",
        "control_socket_disable": True,
        "preload_app": False,
        "child_exit": mark_worker_dead,
        "worker_exit": close_app,
    }
    if settings.worker_tmp_dir is not None:
        options["worker_tmp_dir"] = str(settings.worker_tmp_dir)
    elif Path("/dev/shm").is_dir():
        options["worker_tmp_dir"] = "/dev/shm"
    return options


class WebhookServer(BaseApplication):  # type: ignore[misc]
    """gunicorn application whose workers each build their own app after the fork."""

    def __init__(self, settings: ServeSettings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return build_app(self._settings)

    def run(self) -> None:
        try:
            DrainingArbiter(self).run()
        except RuntimeError as err:  # gunicorn's way of saying it cannot start (port in use...)
            sys.stderr.write(f"error: {err}\n")
            sys.exit(1)


def run(
    settings: ServeSettings, certs: CertFiles, when_listening: Callable[[], None] | None = None
) -> None:
    """Serve until stopped; `when_listening` is called once the port is bound, before workers
    start (gunicorn's when_ready), so that "serving" is said only when it is true."""
    # The JSON log lines use none of these record fields; not gathering them is cheaper
    # (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.getLogger(__name__).debug("starting gunicorn")
    options = gunicorn_options(settings, certs)
    if when_listening is not None:
        options["when_ready"] = lambda _arbiter: when_listening()
    WebhookServer(settings, options).run()
