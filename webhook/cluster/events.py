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
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from webhook.admission.controller import Outcome
from webhook.cluster.api_calls import ApiRejected, ApiUnreachable, Deadline, call_json
from webhook.policy.decision import Verdict
from webhook.policy.evaluate import Action
from webhook.policy.model import Mode
from webhook.policy.request import AdmissionRequest

log = logging.getLogger(__name__)

REASON = "EgressPolicyDenied"
COMPONENT = "egress-guard"
MAX_MESSAGE = 1024
QUEUE_SIZE = 256
EVENTS_PER_SECOND = 10.0
WRITE_BUDGET_S = 5.0
"""Off the review path, an Event may take its time; only the writer thread waits for it."""

JsonObject = dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def denial_event(request: AdmissionRequest, message: str, instance: str) -> JsonObject:
    """A core/v1 Event on the refused workload, in its namespace."""
    name = request.object_name or request.kind.lower()
    now = _now()
    involved: JsonObject = {"kind": request.kind, "namespace": request.namespace, "name": name}
    if request.version:
        involved["apiVersion"] = (
            f"{request.group}/{request.version}" if request.group else request.version
        )
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{name[:200]}.{uuid.uuid4().hex[:16]}",
            "namespace": request.namespace,
        },
        "involvedObject": involved,
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
    ) -> None:
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
        self._pid = 0
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def observe(self, request: AdmissionRequest, action: Action, outcome: Outcome) -> None:
        """Called for every answered review: cheap unless this one is an enforce-mode denial."""
        decision = outcome.decision
        if (
            decision.verdict is not Verdict.DENIED
            or outcome.mode != Mode.ENFORCE.value
            or action is not Action.VALIDATE
            or request.dry_run
            or not request.namespace
        ):
            return
        if not self._take_token():
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(denial_event(request, decision.message, self._instance))
        except queue.Full:
            self.dropped += 1
            return
        self._ensure_writer()

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
        # Started on first use in each process: a thread does not survive gunicorn's fork.
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._write_forever, name="egress-guard-events", daemon=True
                )
                self._thread.start()

    def _write_forever(self) -> None:
        while True:
            event = self._queue.get()
            try:
                call_json(
                    self._create,
                    event["metadata"]["namespace"],
                    event,
                    timeout=Deadline(WRITE_BUDGET_S).timeout(connect_s=1.0, read_s=WRITE_BUDGET_S),
                )
                self.written += 1
            except (ApiRejected, ApiUnreachable) as err:
                self.failed += 1
                log.warning("denial event not recorded: %s", err)
            finally:
                self._queue.task_done()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued event is written or failed (for tests and shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks
