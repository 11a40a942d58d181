"""Writes at a bounded rate, a few at a time, backing off when the API server asks.

A reconcile pass over a large cluster can have thousands of objects to write. Sent as fast as
possible they would take the API server's capacity from everyone else; API Priority and Fairness
answers a client over its share with 429 and `Retry-After`, and an overloaded server with 5xx.
So writes go through one token bucket (a steady rate with a small burst), a fixed number run at
once, a 429 holds every writer back for the time the server asked (not just the one that got it),
and a transient failure is tried again after a growing pause, a bounded number of times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from webhook.cluster.api_calls import ApiRejected, ApiUnreachable
from webhook.config.settings import RECONCILE_WRITES_IN_FLIGHT, RECONCILE_WRITES_PER_SECOND

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PacingSettings:
    """How fast and how many at once; `attempts` counts the first try."""

    writes_per_second: float = RECONCILE_WRITES_PER_SECOND
    in_flight: int = RECONCILE_WRITES_IN_FLIGHT
    attempts: int = 5
    first_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.writes_per_second <= 0 or self.in_flight < 1 or self.attempts < 1:
            raise ValueError("write pacing needs a positive rate, in-flight count and attempts")

    def backoff(self, attempt: int) -> float:
        """The pause after the `attempt`-th failure (0-based) when the server named none."""
        return float(min(self.first_backoff_s * 2.0**attempt, self.max_backoff_s))


class WriteRate:
    """A token bucket shared by the writers of one pass, with a pause every writer honours."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / per_second
        self._burst = max(1.0, per_second / 10)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self._burst
        self._updated = clock()
        self._paused_until = 0.0
        self.waited_s = 0.0
        """Time spent waiting for the rate or a pause, summed over writers."""

    def hold_off(self, seconds: float) -> None:
        """Nobody writes for `seconds` from now (the server said `Retry-After`)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def acquire(self) -> None:
        """Wait for this writer's turn."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._paused_until - now
                if wait <= 0:
                    elapsed = now - self._updated
                    self._tokens = min(self._burst, self._tokens + elapsed / self._interval)
                    self._updated = now
                    if self._tokens >= 1 - 1e-9:  # a whole token, give or take float rounding
                        self._tokens = max(0.0, self._tokens - 1)
                        return
                    wait = (1 - self._tokens) * self._interval
                self.waited_s += wait
            self._sleep(wait)


def paced(
    operation: Callable[[], T],
    rate: WriteRate,
    settings: PacingSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[Exception, float], None] | None = None,
) -> T:
    """Run one write at the shared rate, trying a transient failure again; the last failure, or
    any other, is raised. A 429 pauses every writer for its `Retry-After`."""
    for attempt in range(settings.attempts):
        rate.acquire()
        try:
            return operation()
        except ApiRejected as err:
            if not err.transient or attempt == settings.attempts - 1:
                raise
            delay = err.retry_after_s
            delay = settings.backoff(attempt) if delay is None else delay
            delay = min(delay, settings.max_backoff_s)
            if on_retry is not None:
                on_retry(err, delay)
            if err.status == 429:
                rate.hold_off(delay)
            else:
                sleep(delay)
        except ApiUnreachable as err:
            if attempt == settings.attempts - 1:
                raise
            delay = settings.backoff(attempt)
            if on_retry is not None:
                on_retry(err, delay)
            sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")
