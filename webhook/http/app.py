"""The Flask application: `create_app()` builds one around an admission controller."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from webhook.admission.controller import AdmissionController, Outcome
from webhook.admission.review import ReviewError, parse_review, render_response
from webhook.http.logs import log_decision, log_refusal
from webhook.http.metrics import CONTENT_TYPE, WebhookMetrics
from webhook.policy.evaluate import Action
from webhook.policy.request import AdmissionRequest

DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
"""Object and oldObject at etcd's 1.5 MiB limit each, JSON-escaped, fit well inside this."""

EXTENSION = "egress_guard"


@dataclass(slots=True)
class WebhookState:
    """What the app serves with, kept in `app.extensions["egress_guard"]`."""

    controller: AdmissionController
    ready: Callable[[], str | None]
    """None when ready, otherwise the reason it is not."""
    metrics: WebhookMetrics
    on_review: Callable[[AdmissionRequest, Action, Outcome], None] | None = None
    """Told of every answered review after the answer is rendered (denial Events)."""


def _json_error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status=status, mimetype="application/json")


def create_app(
    controller: AdmissionController,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ready: Callable[[], str | None] = lambda: None,
    metrics: WebhookMetrics | None = None,
    on_review: Callable[[AdmissionRequest, Action, Outcome], None] | None = None,
) -> Flask:
    app = Flask("egress_guard")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    state = WebhookState(
        controller=controller,
        ready=ready,
        metrics=metrics or WebhookMetrics(),
        on_review=on_review,
    )
    app.extensions[EXTENSION] = state

    def refuse(status: int, message: str) -> Response:
        """A body that is no review egress-guard can answer: counted, logged, a JSON 4xx."""
        state.metrics.invalid_review()
        log_refusal(request.path, status, message)
        return _json_error(status, message)

    def answer(action: Action) -> Response:
        started = time.perf_counter()
        if request.mimetype != "application/json":
            return refuse(
                415, f"Content-Type must be application/json, not {request.mimetype or 'absent'}"
            )
        body = request.get_data(cache=False)
        if request.content_length is None and len(body) >= max_body_bytes:
            # A streamed (chunked) body is cut at the limit rather than refused: refuse it here.
            return _too_large()
        try:
            review = parse_review(body)
        except ReviewError as err:
            return refuse(err.status, str(err))
        outcome = state.controller.review(review.request, action)
        body = render_response(review.api_version, review.request.uid, outcome.decision)
        latency_s = time.perf_counter() - started
        log_decision(review.request, action, outcome, latency_s)
        state.metrics.observe(review.request, action, outcome, latency_s)
        if state.on_review is not None:
            state.on_review(review.request, action, outcome)
        return Response(body, status=200, mimetype="application/json")

    @app.post("/validate")
    def validate() -> Response:
        return answer(Action.VALIDATE)

    @app.post("/mutate")
    def mutate() -> Response:
        return answer(Action.MUTATE)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b"ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        problem = state.ready()
        if problem is not None:
            return Response(f"not ready: {problem}\n", status=503, mimetype="text/plain")
        return Response(b"ok\n", mimetype="text/plain")

    @app.get("/metrics")
    def metrics_text() -> Response:
        return Response(state.metrics.exposition(), content_type=CONTENT_TYPE)

    def _too_large() -> Response:
        return refuse(413, f"body larger than the limit of {max_body_bytes} bytes")

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> Response:
        return _too_large()

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        return _json_error(err.code or 500, err.description or err.name)

    @app.errorhandler(Exception)
    def unexpected_error(err: Exception) -> Response:
        state.metrics.internal_error()
        app.logger.exception("unhandled error")
        return _json_error(500, "internal error; see the egress-guard log")

    return app
