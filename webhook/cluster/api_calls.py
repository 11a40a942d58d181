"""Calls to the Kubernetes API through the official client: raw JSON, bounded time, two errors.

The typed client methods are called with `_preload_content=False` so that egress-guard reads the
JSON the API server sent (what its hashes and comparisons are about), not a model's round trip.
Every call gets a timeout cut to what is left of the caller's time budget, and the client's own
retries are off (see `client.py`), so that a call never takes longer than the caller allowed.

Failures come out as one of two exceptions: `ApiUnreachable` (no answer: refused, timed out,
reset, TLS) or `ApiRejected` (the API server answered with an error `Status`).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import urllib3
from kubernetes.client.exceptions import ApiException

from webhook.core.raw_object import JsonObject

CALL_CONNECT_TIMEOUT_S = 0.5
"""A loopback or in-cluster API server accepts a connection in milliseconds; longer means down."""
CALL_READ_TIMEOUT_S = 1.5


class ApiUnreachable(Exception):
    """The API server did not answer in time, or could not be reached at all."""


class ApiRejected(Exception):
    """The API server answered with an error status."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        retry_after_s: float | None = None,
        *,
        names_object: bool = True,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after_s = retry_after_s
        """The server's `Retry-After`, in seconds, when it sent one (429, some 5xx)."""
        self.names_object = names_object
        """The Status's `details` name an object (or the answer was not a Status)."""

    @property
    def unknown_resource(self) -> bool:
        """404 for the resource itself, not for an object of it: the server does not serve the
        kind (`the server could not find the requested resource`, with no object named)."""
        return self.status == 404 and not self.names_object

    @property
    def transient(self) -> bool:
        """Worth trying again later: throttled (429, API Priority and Fairness) or a server-side
        failure (5xx other than 501, which will not change)."""
        return self.status == 429 or (self.status >= 500 and self.status != 501)

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def conflict(self) -> bool:
        """A stale resourceVersion (or failed precondition): re-read and try again."""
        return self.status == 409 and self.reason != "AlreadyExists"


@dataclass(slots=True)
class Deadline:
    """A time budget shared by the calls of one operation."""

    budget_s: float
    clock: Callable[[], float] = time.monotonic
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining(self) -> float:
        return self.budget_s - (self.clock() - self.started)

    def timeout(
        self, connect_s: float = CALL_CONNECT_TIMEOUT_S, read_s: float = CALL_READ_TIMEOUT_S
    ) -> tuple[float, float]:
        """(connect, read) timeouts for the next call, cut to the budget left; raises
        ApiUnreachable when nothing is left."""
        left = self.remaining()
        if left <= 0.01:
            raise ApiUnreachable(f"no answer within the {self.budget_s:g} s budget")
        return (min(connect_s, left), min(read_s, left))


def describe_unreachable(err: Exception) -> str:
    """What a person should read: `connection refused`, not a urllib3 pool repr."""
    cause: BaseException = err
    if isinstance(err, urllib3.exceptions.MaxRetryError) and err.reason is not None:
        cause = err.reason
    if isinstance(cause, urllib3.exceptions.NewConnectionError):  # a ConnectTimeoutError too
        if "refused" in str(cause).lower():
            return "the Kubernetes API refused the connection"
        return f"the Kubernetes API could not be reached ({cause})"
    if isinstance(cause, urllib3.exceptions.ConnectTimeoutError):
        return "timed out connecting to the Kubernetes API"
    if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
        return "the Kubernetes API did not answer in time"
    text = str(cause)
    if isinstance(cause, urllib3.exceptions.ProtocolError):
        return "the connection to the Kubernetes API was cut"
    return f"the Kubernetes API could not be reached ({text})"


class CallCounter:
    """How many calls an operation made to the API server (thread-safe: writes run in parallel)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self) -> None:
        with self._lock:
            self.count += 1


def _retry_after(err: ApiException) -> float | None:
    """`Retry-After` in seconds (the API server sends whole seconds, never an HTTP date)."""
    headers = err.headers or {}
    try:
        value = float(headers.get("Retry-After", ""))
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def _rejected(err: ApiException) -> ApiRejected | ApiUnreachable:
    status = int(err.status or 0)
    if status == 0:  # the client's way of reporting a TLS failure
        return ApiUnreachable(f"the Kubernetes API could not be reached ({err.reason})")
    reason, message = str(err.reason or ""), ""
    try:
        body = json.loads(err.body or "")
    except (TypeError, ValueError):
        body = None
    names_object = True
    if isinstance(body, dict):
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or "")
        details = body.get("details")
        names_object = isinstance(details, dict) and bool(details.get("name"))
    return ApiRejected(status, reason, message, _retry_after(err), names_object=names_object)


def call_json(
    method: Callable[..., Any],
    *args: Any,
    timeout: tuple[float, float],
    counter: CallCounter | None = None,
    **kwargs: Any,
) -> JsonObject:
    """Call a typed client method and return the JSON object the API server answered."""
    if counter is not None:
        counter.add()
    try:
        response = method(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
    except ApiException as err:
        raise _rejected(err) from None
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise ApiUnreachable(describe_unreachable(err)) from None
    try:
        data = response.data
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise ApiUnreachable(describe_unreachable(err)) from None
    finally:
        response.release_conn()
    try:
        document = orjson.loads(data)  # pages of 500 objects: several times faster than json
    except ValueError:
        raise ApiUnreachable("the Kubernetes API answered something that is not JSON") from None
    if not isinstance(document, dict):
        raise ApiUnreachable("the Kubernetes API answered something that is not an object")
    return document


def pages(
    method: Callable[..., Any],
    *args: Any,
    timeout: tuple[float, float],
    page_size: int = 500,
    max_pages: int = 10_000,
    counter: CallCounter | None = None,
    retries: int = 0,
    **kwargs: Any,
) -> Iterator[tuple[list[JsonObject], str]]:
    """A list call a page at a time (`limit`/`continue`), with each page's resourceVersion, so
    that a caller can reduce a large collection without holding all of it."""
    token: str | None = None
    for _ in range(max_pages):
        page = _page_with_retries(
            functools.partial(
                call_json,
                method,
                *args,
                timeout=timeout,
                counter=counter,
                limit=page_size,
                _continue=token,
                **kwargs,
            ),
            retries,
        )
        items = [item for item in page.get("items") or () if isinstance(item, dict)]
        metadata = page.get("metadata") or {}
        yield items, str(metadata.get("resourceVersion") or "")
        token = metadata.get("continue") or None
        if not token:
            return
    raise ApiUnreachable(f"a list did not end after {max_pages} pages")


PAGE_RETRIES = 2
"""For a long read (a reconcile pass, a report): a page answered 429 or 5xx, or not at all, is
asked for again this many times, so that one throttled page does not fail a hundred. A watch's
own re-list has its own backoff and asks for none (`retries=0`, the default)."""


def _page_with_retries(
    read: Callable[[], JsonObject], retries: int, sleep: Callable[[float], None] = time.sleep
) -> JsonObject:
    for attempt in range(retries + 1):
        try:
            return read()
        except ApiRejected as err:
            if not err.transient or attempt == retries:
                raise
            wait = err.retry_after_s if err.retry_after_s is not None else 0.5 * 2**attempt
        except ApiUnreachable:
            if attempt == retries:
                raise
            wait = 0.5 * 2**attempt
        sleep(min(wait, 10.0))
    raise AssertionError("unreachable: the last attempt returns or raises")


def list_all(
    method: Callable[..., Any],
    *args: Any,
    timeout: tuple[float, float],
    page_size: int = 500,
    max_pages: int = 10_000,
    counter: CallCounter | None = None,
    retries: int = 0,
    **kwargs: Any,
) -> tuple[list[JsonObject], str]:
    """Every item of a list call, read a page at a time, and the list's resourceVersion."""
    items: list[JsonObject] = []
    resource_version = ""
    for page, version in pages(
        method,
        *args,
        timeout=timeout,
        page_size=page_size,
        max_pages=max_pages,
        counter=counter,
        retries=retries,
        **kwargs,
    ):
        items.extend(page)
        resource_version = version
    return items, resource_version
