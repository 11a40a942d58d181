"""List, then watch, one kind of object, as an informer does; and say how long it has been blind.

A background thread lists the objects once and then follows a watch from the list's
resourceVersion, so its owner sees every change within moments without asking. When the watch is
cut (API down, timeout, reset) the thread lists again after a backoff; when the resourceVersion is
too old (410 Gone) it lists again at once. Each list is handed over whole (`on_list`, with the
time the list was asked for), so the owner can notice what changed while nobody was watching.

The owner's memory is only as good as the watch: `down_for()` says how long the thread has not
been following the API server (from start-up until the first list, and from a failure until the
next successful list), so that memory can stop being trusted after a bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from webhook.cluster.api_calls import (
    CALL_CONNECT_TIMEOUT_S,
    ApiRejected,
    ApiUnreachable,
    describe_unreachable,
    list_all,
)
from webhook.core.raw_object import JsonObject

log = logging.getLogger(__name__)

WATCH_SECONDS = 240
"""How long one watch request runs before the API server ends it and it is started again."""
LIST_TIMEOUT = (CALL_CONNECT_TIMEOUT_S * 2, 30.0)
ABSENT_RECHECK_S = 30.0
"""How often a resource the API server does not serve (a CRD not installed) is listed again."""
BACKOFF_S = (0.2, 5.0)

OnList = Callable[[list[JsonObject], float], None]
"""Every object, and the monotonic time the list was asked for."""
OnEvent = Callable[[str, JsonObject], None]
"""ADDED, MODIFIED or DELETED, and the object."""


class ListWatch:
    """Follows one list call (`method`, e.g. CoreV1Api.list_namespace) with a watch."""

    def __init__(
        self,
        what: str,
        method: Callable[..., Any],
        *,
        on_list: OnList,
        on_event: OnEvent,
        watch_seconds: int = WATCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        label_selector: str | None = None,
        may_be_absent: bool = False,
    ) -> None:
        self.what = what
        self._method = method
        self._on_list = on_list
        self._on_event = on_event
        self._watch_seconds = watch_seconds
        self._clock = clock
        self._selectors: dict[str, Any] = {}
        if label_selector:
            self._selectors["label_selector"] = label_selector
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        self._down_since: float | None = clock()
        self._problem = "not listed yet"
        self.synced = threading.Event()
        """Set once the first list has been handed over."""
        self._may_be_absent = may_be_absent
        self.absent = False
        """The resource cannot be listed and may not be (a CRD not installed, or a role that does
        not grant it): an empty list was handed over, and it is asked for again every
        ABSENT_RECHECK_S. `absent_why` says which."""
        self.absent_why = ""

    # health

    def down_for(self) -> float:
        """Seconds since the thread last followed the API server; 0 while it does."""
        since = self._down_since
        return 0.0 if since is None else max(self._clock() - since, 0.0)

    def trusted(self, bound_s: float) -> bool:
        """What the watch delivered may be relied on: it is following, or has been blind for
        less than `bound_s`. The healthy case costs an attribute read."""
        since = self._down_since
        return since is None or self._clock() - since < bound_s

    @property
    def problem(self) -> str | None:
        """Why the thread is not following now (None while it is)."""
        return None if self._down_since is None else self._problem

    # lifecycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"egress-guard-watch-{self.what}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(
                AttributeError, OSError, ValueError, urllib3.exceptions.HTTPError
            ):
                response.shutdown()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # the loop

    def _run(self) -> None:
        backoff = BACKOFF_S[0]
        while not self._stop.is_set():
            try:
                resource_version = self._list()
                backoff = BACKOFF_S[0]
                if resource_version is None:
                    self._stop.wait(ABSENT_RECHECK_S)
                    continue
                while not self._stop.is_set():
                    resource_version = self._watch(resource_version)
            except _WatchExpired:
                log.info("%s watch expired; listing again", self.what)
                continue
            except (ApiUnreachable, ApiRejected) as err:
                self._went_down(str(err))
                log.warning(
                    "%s watch interrupted (%s); what was seen stays in use, retrying in %.1f s",
                    self.what,
                    err,
                    backoff,
                )
            except Exception as err:
                self._went_down(f"unexpected error: {err}")
                log.exception("%s watch failed; retrying in %.1f s", self.what, backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, BACKOFF_S[1])

    def _went_down(self, problem: str) -> None:
        self._problem = problem
        if self._down_since is None:
            self._down_since = self._clock()

    def _list(self) -> str | None:
        """List and hand over; the resourceVersion to watch from, or None when the resource is
        not served and may not be (there is nothing of it, and nothing to watch)."""
        asked = self._clock()
        try:
            items, resource_version = list_all(
                self._method, timeout=LIST_TIMEOUT, **self._selectors
            )
        except ApiRejected as err:
            if not (self._may_be_absent and (err.unknown_resource or err.status == 403)):
                raise
            why = (
                "the cluster does not serve this kind (is its CRD installed?)"
                if err.unknown_resource
                else "egress-guard's role may not list it (render RBAC for the policy file's "
                "backends: egress-guard manifests)"
            )
            if not self.absent or why != self.absent_why:
                log.warning("%s: %s", self.what, why)
            self.absent, self.absent_why = True, why
            self._on_list([], asked)
            self._down_since = None
            self.synced.set()
            return None
        if self.absent:
            log.info("%s: served now", self.what)
        self.absent = False
        self._on_list(items, asked)
        self._down_since = None
        self.synced.set()
        log.info("%s listed: %d", self.what, len(items))
        return resource_version

    def _watch(self, resource_version: str) -> str:
        """Hand over one watch request's events; the resourceVersion to resume from."""
        for event in self._events(resource_version):
            kind = event.get("type")
            obj = event.get("object")
            if not isinstance(obj, dict):
                continue
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _WatchExpired
                raise ApiRejected(
                    int(obj.get("code") or 500), str(obj.get("reason")), str(obj.get("message"))
                )
            metadata = obj.get("metadata") or {}
            resource_version = str(metadata.get("resourceVersion") or resource_version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self._on_event(str(kind), obj)
        return resource_version

    def _events(self, resource_version: str) -> Iterator[JsonObject]:
        try:
            response: Any = self._method(
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_seconds,
                _preload_content=False,
                _request_timeout=(LIST_TIMEOUT[0], self._watch_seconds + 15.0),
                **self._selectors,
            )
        except ApiException as err:
            raise ApiRejected(int(err.status or 0), str(err.reason), "") from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise ApiUnreachable(describe_unreachable(err)) from None
        self._response = response
        if self._stop.is_set():  # stop() ran before there was a response to shut down
            response.release_conn()
            return
        try:
            yield from _json_lines(response.stream(64 * 1024), self._stop.is_set)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            if not self._stop.is_set():
                raise ApiUnreachable(describe_unreachable(err)) from None
        finally:
            self._response = None
            response.release_conn()


class _WatchExpired(Exception):
    """The resourceVersion is too old to resume from (410 Gone): list again."""


def _json_lines(chunks: Iterator[bytes], stopped: Callable[[], bool]) -> Iterator[JsonObject]:
    buffer = b""
    for chunk in chunks:
        if stopped():
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                event = json.loads(line)
                if isinstance(event, dict):
                    yield event
