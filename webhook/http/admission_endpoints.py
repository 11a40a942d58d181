"""POST /validate and /mutate, served in front of Flask's per-request machinery.

Measured under gunicorn over TLS on one core, Flask's request and response objects, context push
and dispatch cost about 110 µs per request, more than the whole review (parse, decide, render,
log: about 70 µs) and almost as much as gunicorn and TLS together. The API server calls these two
paths for every admission, so they are plain WSGI here; Flask still serves everything else (health,
readiness, metrics, and JSON errors for unknown paths), and both live in the one app `create_app`
returns.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from webhook.admission.review import ReviewError, parse_review, render_response
from webhook.core.evaluate import Action
from webhook.http.logs import log_decision, log_refusal

if TYPE_CHECKING:
    from webhook.admission.controller import ReviewResult
    from webhook.core.request import AdmissionRequest
    from webhook.http.app import WebhookState

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

ROUTES = {"/validate": Action.VALIDATE, "/mutate": Action.MUTATE}

_REASONS = {
    200: "200 OK",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    405: "405 Method Not Allowed",
    413: "413 Content Too Large",
    415: "415 Unsupported Media Type",
    500: "500 Internal Server Error",
}
_READ_CHUNK = 64 * 1024


class RequestRefused(Exception):
    """The request is no review egress-guard can answer: a 4xx with a reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _media_type(environ: dict[str, Any]) -> str:
    return str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip().lower()


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body, refused from its declared length alone when that is over `limit`.

    A chunked body has no declared length: it is read up to the limit, and refused if it goes on.
    """
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH")
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise RequestRefused(400, f"Content-Length {declared!r} is not a number") from None
        if length > limit:
            raise RequestRefused(413, f"body larger than the limit of {limit} bytes")
        return bytes(stream.read(length)) if length > 0 else b""
    if not environ.get("wsgi.input_terminated"):
        return b""  # no length and no server-terminated stream: nothing can be read safely
    parts: list[bytes] = []
    size = 0
    while chunk := stream.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise RequestRefused(413, f"body larger than the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _verified_client(environ: dict[str, Any]) -> bool:
    """The connection's peer presented a certificate the TLS layer verified (with a client CA
    set, the context asks for one and verifies what is presented; an empty answer is none)."""
    sock = environ.get("gunicorn.socket")
    try:
        return bool(sock is not None and sock.getpeercert())
    except (AttributeError, ValueError, OSError):
        return False


class AdmissionEndpoints:
    """WSGI middleware: the two review paths here, every other request to Flask."""

    def __init__(
        self,
        flask_app: WsgiApp,
        state: WebhookState,
        max_body_bytes: int,
        *,
        client_certificates: bool = False,
    ) -> None:
        self._flask_app = flask_app
        self._state = state
        self._limit = max_body_bytes
        self._client_certificates = client_certificates
        """Reviews only from a client that presented a certificate the client CA verified."""

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        action = ROUTES.get(environ.get("PATH_INFO", ""))
        if action is None:
            return self._flask_app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            body = orjson.dumps({"error": "only POST is allowed here"})
            headers = [("Allow", "POST")]
            return self._respond(start_response, 405, body, headers)
        try:
            if self._client_certificates and not _verified_client(environ):
                raise RequestRefused(
                    401, "a client certificate from the configured client CA is required"
                )
            status, body = 200, self._answer(action, environ)
        except RequestRefused as refused:
            self._state.metrics.invalid_review()
            log_refusal(environ.get("PATH_INFO", ""), refused.status, str(refused))
            status, body = refused.status, orjson.dumps({"error": str(refused)})
        except Exception:  # never a stack trace on the wire
            self._state.metrics.internal_error()
            log.exception("answering a review failed")
            status, body = 500, orjson.dumps({"error": "internal error; see the egress-guard log"})
        return self._respond(start_response, status, body)

    @staticmethod
    def _respond(
        start_response: Callable[..., Any],
        status: int,
        body: bytes,
        extra: list[tuple[str, str]] | None = None,
    ) -> list[bytes]:
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(_REASONS.get(status, f"{status} Error"), headers + (extra or []))
        return [body]

    def _answer(self, action: Action, environ: dict[str, Any]) -> bytes:
        started = time.perf_counter()
        media_type = _media_type(environ)
        if media_type != "application/json":
            raise RequestRefused(
                415, f"Content-Type must be application/json, not {media_type or 'absent'}"
            )
        try:
            review = parse_review(read_body(environ, self._limit))
        except ReviewError as err:
            raise RequestRefused(err.status, str(err)) from None
        state = self._state
        result = state.controller.review(review.request, action)
        body = render_response(review.api_version, review.request.uid, result.decision)
        self._observe(review.request, action, result, time.perf_counter() - started)
        return body

    def _observe(
        self, request: AdmissionRequest, action: Action, result: ReviewResult, latency_s: float
    ) -> None:
        """Tell the observers of an answered review. The answer is decided: an observer that
        fails is logged and counted, and never turns the answer into a 500."""
        state = self._state
        try:
            log_decision(request, action, result, latency_s)
        except Exception:
            self._observer_failed("log")
        try:
            state.metrics.observe(request, action, result, latency_s)
        except Exception:
            self._observer_failed("metrics")
        if state.on_review is not None:
            try:
                state.on_review(request, action, result)
            except Exception:
                self._observer_failed("on_review")

    def _observer_failed(self, observer: str) -> None:
        log.exception("the %s observer failed on an answered review", observer)
        with contextlib.suppress(Exception):
            self._state.metrics.observer_failed(observer)
