"""Namespace labels from the cluster, kept current by a list and a watch, read from memory.

A `ListWatch` lists every namespace once and then watches for changes, so a label change is seen
within moments and the admission path reads a dict. A namespace costs a single GET, bounded in
time, only when memory cannot be trusted for it; concurrent lookups of the same namespace share
that GET. Memory cannot be trusted:

- for a namespace not seen yet (created a moment ago, or while the first list is running);
- for a namespace seen *without* the mode label: the API server sends reviews only for namespaces
  whose labels match the webhooks' `<prefix>/mode Exists` selector, so a review for such a
  namespace means the label was set after what memory holds (watch lag, a reconnect);
- for every namespace once the watch has been down longer than `stale_after_s`: labels last
  seen carry an outage of a few seconds, but not an unbounded one.

A namespace that does not exist is None and is not remembered, so its creation is seen by the
next lookup. Each entry keeps the namespace's UID beside its labels, and listeners (the policy
applier) are told when a namespace is deleted, recreated or relabelled, however that was seen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from kubernetes import client

from webhook.admission.budgets import NAMESPACE_LOOKUP_BUDGET_S
from webhook.admission.ports import NamespaceUnavailable, PolicySource
from webhook.cluster.api_calls import ApiRejected, ApiUnreachable, Deadline, call_json
from webhook.cluster.list_watch import WATCH_SECONDS, ListWatch
from webhook.core.raw_object import JsonObject, section, text_at

log = logging.getLogger(__name__)

STALE_AFTER_S = 30.0
"""How long labels are trusted while the watch is down: a reconnect takes well under this; an
outage longer than this makes every lookup a bounded GET (and the server not ready)."""

Labels = Mapping[str, str]
_NO_LABELS: Labels = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class NamespaceEntry:
    """What is known of a namespace: its labels, its UID, and when the API last said so."""

    labels: Labels
    uid: str
    seen_at: float


NamespaceListener = Callable[[str, NamespaceEntry | None, NamespaceEntry | None], None]
"""Told (name, before, after) when a namespace appears, goes, or changes labels or UID."""


def _entry_of(obj: Mapping[str, Any], seen_at: float) -> tuple[str, NamespaceEntry] | None:
    name = text_at(obj, "metadata", "name")
    if not name:
        return None
    labels = section(obj, "metadata", "labels")
    frozen = MappingProxyType({str(k): str(v) for k, v in labels.items()}) if labels else _NO_LABELS
    return name, NamespaceEntry(frozen, text_at(obj, "metadata", "uid"), seen_at)


def _same(before: NamespaceEntry | None, after: NamespaceEntry | None) -> bool:
    if before is None or after is None:
        return before is after
    return before.uid == after.uid and before.labels == after.labels


class NamespaceCache:
    """The `NamespaceSource` of a cluster: labels from memory, kept current by a watch."""

    def __init__(
        self,
        api: client.ApiClient,
        policies: PolicySource,
        *,
        lookup_budget_s: float = NAMESPACE_LOOKUP_BUDGET_S,
        stale_after_s: float = STALE_AFTER_S,
        watch_seconds: int = WATCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._policies = policies
        self._lookup_budget_s = lookup_budget_s
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._entries: dict[str, NamespaceEntry] = {}
        self._lock = threading.Lock()
        self._lookups: dict[str, threading.Lock] = {}
        self._listeners: list[NamespaceListener] = []
        self.watch = ListWatch(
            "namespaces",
            self._core.list_namespace,
            on_list=self._listed,
            on_event=self._event,
            watch_seconds=watch_seconds,
            clock=clock,
        )

    @property
    def synced(self) -> threading.Event:
        """Set once the first list has filled the cache."""
        return self.watch.synced

    # the NamespaceSource interface

    def labels(self, namespace: str) -> Mapping[str, str] | None:
        entry = self._entries.get(namespace)
        if (
            entry is not None
            and self._policies.current().mode_label in entry.labels
            and self.watch.trusted(self.stale_after_s)
        ):
            return entry.labels
        return self._look_up(namespace)

    # for the NetworkPolicy applier and readiness

    def uid(self, namespace: str) -> str | None:
        """The UID of the namespace as last seen (None: not known)."""
        entry = self._entries.get(namespace)
        return entry.uid if entry is not None and entry.uid else None

    def add_listener(self, listener: NamespaceListener) -> None:
        self._listeners.append(listener)

    def not_ready(self) -> str | None:
        """Why admissions cannot rely on this cache now (None: they can)."""
        if not self.watch.synced.is_set():
            return f"the namespace cache is not filled yet ({self.watch.problem})"
        down = self.watch.down_for()
        if down >= self.stale_after_s:
            return f"the namespace watch has been down for {down:.0f} s ({self.watch.problem})"
        return None

    # lifecycle

    def start(self) -> None:
        self.watch.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.watch.stop(timeout_s)

    # a lookup memory cannot answer

    def _look_up(self, namespace: str) -> Labels | None:
        deadline = Deadline(self._lookup_budget_s, self._clock)
        asked = deadline.started
        with self._lock:
            lock = self._lookups.setdefault(namespace, threading.Lock())
        if not lock.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise NamespaceUnavailable(
                f"timed out after {self._lookup_budget_s:g} s waiting for namespace {namespace!r}"
            )
        try:
            before = self._entries.get(namespace)
            if before is not None and before.seen_at >= asked:
                return before.labels  # the GET this lookup waited for, or the watch, answered
            try:
                obj = call_json(self._core.read_namespace, namespace, timeout=deadline.timeout())
            except ApiRejected as err:
                if err.not_found:
                    self._replace_if_unchanged(namespace, before, None)
                    return None
                raise NamespaceUnavailable(str(err)) from None
            except ApiUnreachable as err:
                raise NamespaceUnavailable(str(err)) from None
            found = _entry_of(obj, self._clock())
            if found is None:
                raise NamespaceUnavailable(
                    f"the API answered an unreadable namespace {namespace!r}"
                )
            kept = self._replace_if_unchanged(namespace, before, found[1])
            return kept.labels if kept is not None else found[1].labels
        finally:
            lock.release()
            with self._lock:
                if self._lookups.get(namespace) is lock:
                    del self._lookups[namespace]

    def _replace_if_unchanged(
        self, name: str, before: NamespaceEntry | None, after: NamespaceEntry | None
    ) -> NamespaceEntry | None:
        """Store what a GET found, unless the watch delivered something meanwhile (the watch is
        never older than a GET that started before its event). What is stored is returned."""
        with self._lock:
            current = self._entries.get(name)
            if current is not before:
                return current
            self._put(name, after)
        self._tell(name, before, after)
        return after

    # what the watch delivers

    def _listed(self, items: list[JsonObject], asked: float) -> None:
        seen_at = self._clock()
        fresh: dict[str, NamespaceEntry] = {}
        for item in items:
            found = _entry_of(item, seen_at)
            if found is not None:
                fresh[found[0]] = found[1]
        with self._lock:
            previous = self._entries
            for name, entry in previous.items():
                if name not in fresh and entry.seen_at > asked:
                    fresh[name] = entry  # found by a GET after the list was asked for
            self._entries = fresh
        for name in previous.keys() | fresh.keys():
            self._tell(name, previous.get(name), fresh.get(name))

    def _event(self, kind: str, obj: JsonObject) -> None:
        found = _entry_of(obj, self._clock())
        if found is None:
            return
        name, entry = found
        after = None if kind == "DELETED" else entry
        with self._lock:
            before = self._entries.get(name)
            self._put(name, after)
        self._tell(name, before, after)

    def _put(self, name: str, entry: NamespaceEntry | None) -> None:
        if entry is None:
            self._entries.pop(name, None)
        else:
            self._entries[name] = entry

    def _tell(self, name: str, before: NamespaceEntry | None, after: NamespaceEntry | None) -> None:
        if _same(before, after):
            return
        for listener in self._listeners:
            try:
                listener(name, before, after)
            except Exception:
                log.exception("a namespace listener failed on %s", name)
