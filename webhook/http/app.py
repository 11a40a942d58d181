"""The Flask application: `create_app()` builds one around an admission controller.

The review paths, POST /validate and /mutate, are served by `AdmissionEndpoints` in front of
Flask's request handling (see that module for why); Flask serves the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from webhook.admission.controller import AdmissionController, ReviewResult
from webhook.config.settings import DEFAULT_MAX_BODY_BYTES
from webhook.core.evaluate import Action
from webhook.core.request import AdmissionRequest
from webhook.http.admission_endpoints import AdmissionEndpoints
from webhook.http.metrics import CONTENT_TYPE, WebhookMetrics

EXTENSION = "egress_guard"


@dataclass(slots=True)
class WebhookState:
    """What the app serves with, kept in `app.extensions["egress_guard"]`."""

    controller: AdmissionController
    ready: Callable[[], str | None]
    """None when ready, otherwise the reason it is not."""
    metrics: WebhookMetrics
    warnings: Callable[[], tuple[str, ...]] = lambda: ()
    """What is wrong without making the webhook unready (a backend's CRD not installed: the
    namespaces that use it are refused, each with the reason), said by /readyz."""
    on_review: Callable[[AdmissionRequest, Action, ReviewResult], None] | None = None
    """Told of every answered review after the answer is rendered (denial Events)."""
    close: Callable[[], None] = lambda: None
    """Called once as the worker exits: writes what is queued, stops watches, disconnects."""


def _json_error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status=status, mimetype="application/json")


def create_app(
    controller: AdmissionController,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ready: Callable[[], str | None] = lambda: None,
    metrics: WebhookMetrics | None = None,
    on_review: Callable[[AdmissionRequest, Action, ReviewResult], None] | None = None,
    close: Callable[[], None] = lambda: None,
    client_certificates: bool = False,
    warnings: Callable[[], tuple[str, ...]] = lambda: (),
) -> Flask:
    app = Flask("egress_guard")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    state = WebhookState(
        controller=controller,
        ready=ready,
        metrics=metrics or WebhookMetrics(),
        on_review=on_review,
        close=close,
        warnings=warnings,
    )
    app.extensions[EXTENSION] = state

    app.wsgi_app = AdmissionEndpoints(  # type: ignore[method-assign]
        app.wsgi_app, state, max_body_bytes, client_certificates=client_certificates
    )

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b"ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        problem = state.ready()
        if problem is not None:
            return Response(f"not ready: {problem}\n", status=503, mimetype="text/plain")
        said = "".join(f"warning: {warning}\n" for warning in state.warnings())
        return Response(f"ok\n{said}", mimetype="text/plain")

    @app.get("/metrics")
    def metrics_text() -> Response:
        return Response(state.metrics.exposition(), content_type=CONTENT_TYPE)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        return _json_error(err.code or 500, err.description or err.name)

    @app.errorhandler(Exception)
    def unexpected_error(err: Exception) -> Response:
        state.metrics.internal_error()
        app.logger.exception("unhandled error")
        return _json_error(500, "internal error; see the egress-guard log")

    return app
