"""A Kubernetes Event for each workload refused in enforce mode, written off the review path.

`kubectl get events -n NS` (and `kubectl describe` of a workload that exists) then shows why
egress-guard refused it, next to the controllers' own events. The answer to the API server never
waits for this: a review only puts the event in a bounded queue; one thread per worker process
writes them. When the queue is full or the rate limit is reached (a CI loop re-applying a bad
manifest), events are dropped and counted, never the review slowed. Dry runs record nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from webhook.admission.controller import ReviewResult
from webhook.cluster.api_calls import ApiRejected, ApiUnreachable, Deadline, call_json
from webhook.core.decision import Verdict
from webhook.core.evaluate import Action
from webhook.core.policy import Mode
from webhook.core.raw_object import JsonObject, section
from webhook.core.request import AdmissionRequest

log = logging.getLogger(__name__)

REASON = "EgressPolicyDenied"
COMPONENT = "egress-guard"
MAX_MESSAGE = 1024
QUEUE_SIZE = 256
EVENTS_PER_SECOND = 10.0
EVENT_WRITE_BUDGET_S = 5.0
"""Off the review path, an Event may take its time; only the writer thread waits for it."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_SUFFIX_LENGTH = 16
_MAX_NAME = 253
_INVALID = re.compile(r"[^a-z0-9.-]+")


def event_name(base: str) -> str:
    """A DNS subdomain naming one Event: `base` made valid, a dot, and a random suffix.

    `base` is the object's name or generateName; what the API would refuse in a name (upper case,
    `<`, a trailing `-`) is replaced or trimmed, and it is cut so the whole fits in 253 characters.
    """
    cleaned = _INVALID.sub("-", base.lower())
    parts = [part.strip("-") for part in cleaned.split(".")]
    stem = ".".join(part for part in parts if part)[: _MAX_NAME - _SUFFIX_LENGTH - 1]
    stem = stem.rstrip("-.") or "egress-guard"
    return f"{stem}.{uuid.uuid4().hex[:_SUFFIX_LENGTH]}"


def _controller_owner(metadata: Mapping[str, Any]) -> Mapping[str, Any] | None:
    owners = metadata.get("ownerReferences")
    if not isinstance(owners, list):
        return None
    for owner in owners:
        if (
            isinstance(owner, Mapping)
            and owner.get("controller") is True
            and all(isinstance(owner.get(key), str) and owner[key] for key in ("kind", "name"))
        ):
            return owner
    return None


def involved_object(request: AdmissionRequest) -> JsonObject:
    """What the Event is about: the refused object when it has a name; else (a pod a controller
    asked for with generateName) its controller, so `kubectl describe` of the ReplicaSet or Job
    shows why its pods are missing; else the Namespace.

    An object named only by generateName never exists, so an Event naming it could never be
    found. The Namespace fallback keeps `involvedObject.namespace` equal to the Event's own
    namespace (the API requires it), so the Event is listed by `kubectl get events -n NS`.
    """
    metadata = section(request.object, "metadata")
    name = request.name or metadata.get("name")
    if isinstance(name, str) and name:
        involved: JsonObject = {"kind": request.kind, "namespace": request.namespace, "name": name}
        if request.version:
            involved["apiVersion"] = (
                f"{request.group}/{request.version}" if request.group else request.version
            )
        return involved
    owner = _controller_owner(metadata)
    if owner is not None:
        involved = {"kind": owner["kind"], "namespace": request.namespace, "name": owner["name"]}
        for key in ("apiVersion", "uid"):
            if isinstance(owner.get(key), str) and owner[key]:
                involved[key] = owner[key]
        return involved
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "namespace": request.namespace,
        "name": request.namespace,
    }


def denial_event(request: AdmissionRequest, message: str, instance: str) -> JsonObject:
    """A core/v1 Event about the refused workload, in its namespace."""
    metadata = section(request.object, "metadata")
    base = request.name or metadata.get("name") or metadata.get("generateName")
    now = _now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(base if isinstance(base, str) and base else request.kind),
            "namespace": request.namespace,
        },
        "involvedObject": involved_object(request),
        "reason": REASON,
        "message": message[:MAX_MESSAGE],
        "type": "Warning",
        "action": "Admit",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class DenialEvents:
    """Observes answered reviews; records enforce-mode denials as Events, asynchronously."""

    def __init__(
        self,
        api: Any,
        *,
        instance: str | None = None,
        queue_size: int = QUEUE_SIZE,
        per_second: float = EVENTS_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        count: Callable[[str], None] | None = None,
    ) -> None:
        """`count` is told each Event's fate (written, dropped, failed): the metrics."""
        from kubernetes.client import CoreV1Api

        self._create = CoreV1Api(api).create_namespaced_event
        self._instance = instance or os.environ.get("POD_NAME") or socket.gethostname()
        self._queue: queue.Queue[JsonObject] = queue.Queue(maxsize=queue_size)
        self._per_second = per_second
        self._clock = clock
        self._tokens = per_second
        self._refilled = clock()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._count = count
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def observe(self, request: AdmissionRequest, action: Action, result: ReviewResult) -> None:
        """Called for every answered review: cheap unless this one is an enforce-mode denial."""
        decision = result.decision
        if (
            decision.verdict is not Verdict.DENIED
            or result.mode != Mode.ENFORCE.value
            or action is not Action.VALIDATE
            or request.dry_run
            or not request.namespace
        ):
            return
        if not self._take_token():
            self._counted("dropped")
            return
        try:
            self._queue.put_nowait(denial_event(request, decision.message, self._instance))
        except queue.Full:
            self._counted("dropped")
            return
        self._ensure_writer()

    def _counted(self, result: str) -> None:
        with self._lock:
            setattr(self, result, getattr(self, result) + 1)
        if self._count is not None:
            try:
                self._count(result)
            except Exception:
                log.exception("counting a denial event failed")

    def _take_token(self) -> bool:
        with self._lock:
            now = self._clock()
            elapsed, self._refilled = now - self._refilled, now
            self._tokens = min(self._per_second, self._tokens + elapsed * self._per_second)
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    def _ensure_writer(self) -> None:
        """Start the writer if it is not running: on first use in each process (a thread does
        not survive gunicorn's fork: it is not alive in the child), and again should it die."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                if self._thread is not None:
                    log.warning("the denial event writer was not running; starting it again")
                self._thread = threading.Thread(
                    target=self._write_forever, name="egress-guard-events", daemon=True
                )
                self._thread.start()

    def _write_forever(self) -> None:
        while True:
            event = self._queue.get()
            try:
                self._write(event)
            except BaseException as err:
                self._counted("failed")
                if not isinstance(err, Exception):
                    raise  # the thread ends; the next denial starts another
                log.exception("denial event not recorded")  # the writer outlives any one event
            finally:
                self._queue.task_done()

    def _write(self, event: JsonObject) -> None:
        try:
            call_json(
                self._create,
                event["metadata"]["namespace"],
                event,
                timeout=Deadline(EVENT_WRITE_BUDGET_S).timeout(
                    connect_s=1.0, read_s=EVENT_WRITE_BUDGET_S
                ),
            )
        except (ApiRejected, ApiUnreachable) as err:
            self._counted("failed")
            log.warning("denial event not recorded: %s", err)
            return
        self._counted("written")

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued event is written or failed (a worker's exit)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks
