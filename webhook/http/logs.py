"""Structured logs: one JSON object per line, and one line per admission decision."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import IO, Any

import orjson

from webhook.admission.controller import ReviewResult
from webhook.core import wording
from webhook.core.evaluate import Action
from webhook.core.request import AdmissionRequest

decision_log = logging.getLogger("egress_guard.decision")


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes its lines in batches, at most `interval_s` late.

    One write and flush per decision line cost the admission path a system call and a switch
    between threads (the GIL is released around the write): measured, up to a quarter of a
    review's CPU. Lines are kept in order; a warning or worse, or a full batch, is written at
    once, and `logging.shutdown` (at exit) writes what is left.
    """

    def __init__(
        self, stream: IO[str] | None = None, interval_s: float = 0.5, max_lines: int = 512
    ) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._interval_s = interval_s
        self._max_lines = max_lines
        self._flusher_pid: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)
            full = len(self._lines) >= self._max_lines
        if full or record.levelno >= logging.WARNING:
            self.flush()
        elif self._flusher_pid != os.getpid():  # first line in this process (or after a fork)
            self._flusher_pid = os.getpid()
            threading.Thread(target=self._flush_every_interval, daemon=True).start()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines = self._lines, []
            if lines and self.stream is not None:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass  # stderr gone: nothing left to tell

    def close(self) -> None:
        self._flusher_pid = None  # the flusher thread ends at its next turn
        self.flush()
        super().close()

    def _flush_every_interval(self) -> None:
        pid = os.getpid()
        while self._flusher_pid == pid:
            time.sleep(self._interval_s)
            self.flush()


class JsonFormatter(logging.Formatter):
    """Render records as JSON lines; fields passed as `extra={"fields": {...}}` are merged in."""

    _last_second: tuple[int, str] = (-1, "")
    """The last second formatted, and its text: one attribute, so threads never mix the two."""

    def _timestamp(self, record: logging.LogRecord) -> str:
        """ISO 8601 in UTC; the date and time part is formatted once per second, not per line."""
        second = int(record.created)
        cached_second, text = self._last_second
        if second != cached_second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._last_second = (second, text)
        return f"{text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def log_refusal(path: str, status: int, message: str) -> None:
    """A request that was no answerable review: a line, so that a misbehaving client shows."""
    decision_log.info(
        "request refused",
        extra={"fields": {"path": path, "status": status, "reason": message}},
    )


def log_decision(
    request: AdmissionRequest, action: Action, result: ReviewResult, latency_s: float
) -> None:
    """The decision line: enough to answer "why was my workload refused?" from logs alone."""
    if not decision_log.isEnabledFor(logging.INFO):
        return
    decision = result.decision
    fields: dict[str, Any] = {
        "uid": request.uid,
        "action": action.value,
        "namespace": request.namespace,
        "kind": request.kind,
        "name": request.object_name,
        "operation": request.operation,
        "verdict": decision.verdict.value,
        "allowed": decision.allowed,
        "dryRun": request.dry_run,
        "latencyMs": round(latency_s * 1000, 3),
    }
    if request.sub_resource:
        fields["subResource"] = request.sub_resource
    if decision.findings:
        violations = decision.violations
        if violations:  # what refused it (or would, under enforce), by check id and in words
            fields["checks"] = [finding.check for finding in violations]
            fields["reasons"] = [wording.sentence(finding) for finding in violations]
        warnings = wording.warnings(decision)
        if warnings:
            fields["warnings"] = list(warnings)
    if decision.note:
        fields["note"] = decision.note.value
    if decision.patch:
        fields["patchOps"] = len(decision.patch)
    if not decision.allowed:
        fields["code"] = decision.code
        fields["message"] = wording.message(decision)
    for key in ("created", "updated", "reported"):
        names = [name for applied in result.applied for name in getattr(applied, key)]
        if names:
            fields["networkPolicies" + key.capitalize()] = names
    decision_log.info("admission decision", extra={"fields": fields})
