"""Namespace labels from the cluster, kept current by a list and a watch, read from memory.

A background thread lists every namespace once and then watches for changes, as an informer
does, so a label change is seen within moments and the admission path reads a dict. Only a
namespace the cache has not seen yet (one created a moment ago, before the watch delivered it,
or any namespace while the first list is still running) costs a single GET, bounded in time;
concurrent lookups of the same namespace share that GET. A namespace that does not exist is
None and is not remembered, so its creation is seen by the next lookup.

While the API server is unreachable the watch reconnects with backoff and the labels last seen
stay in use: an admission in a known namespace never waits for the API.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook.admission.ports import NamespaceUnavailable
from webhook.cluster.api_calls import (
    CONNECT_TIMEOUT_S,
    ApiRejected,
    ApiUnreachable,
    Deadline,
    JsonObject,
    call_json,
    describe_unreachable,
    list_all,
)

log = logging.getLogger(__name__)

LOOKUP_BUDGET_S = 1.0
WATCH_SECONDS = 240
"""How long one watch request runs before the API server ends it and it is started again."""
LIST_TIMEOUT = (CONNECT_TIMEOUT_S * 2, 30.0)
BACKOFF_S = (0.2, 5.0)

Labels = Mapping[str, str]
_NO_LABELS: Labels = MappingProxyType({})


def _labels_of(obj: Mapping[str, Any]) -> tuple[str, Labels] | None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str):
        return None
    labels = metadata.get("labels")
    if not isinstance(labels, Mapping) or not labels:
        return metadata["name"], _NO_LABELS
    return metadata["name"], MappingProxyType({str(k): str(v) for k, v in labels.items()})


class NamespaceCache:
    """The `NamespaceSource` of a cluster: labels from memory, kept current by a watch."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        lookup_budget_s: float = LOOKUP_BUDGET_S,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._lookup_budget_s = lookup_budget_s
        self._watch_seconds = watch_seconds
        self._labels: dict[str, Labels] = {}
        self._lookups: dict[str, threading.Lock] = {}
        self._lookups_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        self.synced = threading.Event()
        """Set once the first list has filled the cache."""

    # the NamespaceSource interface

    def labels(self, namespace: str) -> Mapping[str, str] | None:
        known = self._labels.get(namespace)
        if known is not None:
            return known
        return self._look_up(namespace)

    # lifecycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="egress-guard-namespace-watch", daemon=True
            )
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(AttributeError, OSError, urllib3.exceptions.HTTPError):
                response.shutdown()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # the first lookup of a namespace

    def _look_up(self, namespace: str) -> Labels | None:
        deadline = Deadline(self._lookup_budget_s)
        with self._lookups_lock:
            lock = self._lookups.setdefault(namespace, threading.Lock())
        if not lock.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise NamespaceUnavailable(
                f"timed out after {self._lookup_budget_s:g} s waiting for namespace {namespace!r}"
            )
        try:
            known = self._labels.get(namespace)
            if known is not None:
                return known  # another lookup (or the watch) found it meanwhile
            try:
                obj = call_json(self._core.read_namespace, namespace, timeout=deadline.timeout())
            except ApiRejected as err:
                if err.not_found:
                    return None
                raise NamespaceUnavailable(str(err)) from None
            except ApiUnreachable as err:
                raise NamespaceUnavailable(str(err)) from None
            found = _labels_of(obj)
            if found is None:
                raise NamespaceUnavailable(
                    f"the API answered an unreadable namespace {namespace!r}"
                )
            # The watch is authoritative: keep what it has delivered meanwhile.
            return self._labels.setdefault(namespace, found[1])
        finally:
            lock.release()
            with self._lookups_lock:
                self._lookups.pop(namespace, None)

    # the watch

    def _run(self) -> None:
        backoff = BACKOFF_S[0]
        while not self._stop.is_set():
            try:
                resource_version = self._list()
                backoff = BACKOFF_S[0]
                while not self._stop.is_set():
                    resource_version = self._watch(resource_version)
            except _WatchExpired:
                log.info("namespace watch expired; listing again")
                continue
            except (ApiUnreachable, ApiRejected) as err:
                log.warning(
                    "namespace watch interrupted (%s); labels last seen stay in use, "
                    "retrying in %.1f s",
                    err,
                    backoff,
                )
            except Exception:
                log.exception("namespace watch failed; retrying in %.1f s", backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, BACKOFF_S[1])

    def _list(self) -> str:
        items, resource_version = list_all(self._core.list_namespace, timeout=LIST_TIMEOUT)
        fresh: dict[str, Labels] = {}
        for item in items:
            found = _labels_of(item)
            if found is not None:
                fresh[found[0]] = found[1]
        self._labels = fresh
        self.synced.set()
        log.info("namespace cache filled: %d namespaces", len(fresh))
        return resource_version

    def _watch(self, resource_version: str) -> str:
        """Apply one watch request's events; the resourceVersion to resume from."""
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
            found = _labels_of(obj)
            if kind == "BOOKMARK" or found is None:
                continue
            if kind == "DELETED":
                self._labels.pop(found[0], None)
            else:
                self._labels[found[0]] = found[1]
        return resource_version

    def _events(self, resource_version: str) -> Iterator[JsonObject]:
        try:
            response: Any = self._core.list_namespace(
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_seconds,
                _preload_content=False,
                _request_timeout=(LIST_TIMEOUT[0], self._watch_seconds + 15.0),
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
