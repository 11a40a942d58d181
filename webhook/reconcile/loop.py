"""The reconciler as a long-running process (passes every interval, on the leader only) or as
one pass (`--once`).

Either way the elector renews the Lease on a thread of its own for as long as the pass runs, so
a long pass never lets the lease lapse; the pass asks `is_leader()` before every write and stops
if leadership was really lost meanwhile. A replica that becomes leader reconciles at once
instead of waiting for its next interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from webhook.reconcile.health import Progress
from webhook.reconcile.leader_election import LeaderElector
from webhook.reconcile.reconciler import Reconciler, ReconcileReport

log = logging.getLogger(__name__)

ReportSink = Callable[[ReconcileReport], None]


def reconcile_once(reconciler: Reconciler, elector: LeaderElector | None) -> ReconcileReport | None:
    """One pass, if this replica wins the lease (None when another replica holds it); the lease
    is renewed while the pass runs and released after it."""
    if elector is None:
        return reconciler.run_once()
    if not elector.try_acquire_or_renew():
        return None
    stop = threading.Event()
    renewing = _renew_in_background(elector, stop)
    try:
        return reconciler.run_once(may_act=elector.is_leader)
    finally:
        stop.set()
        settings = elector.settings
        renewing.join(settings.renew_deadline_s + settings.retry_period_s)  # a round, a release


def _renew_in_background(elector: LeaderElector, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(
        target=elector.run, args=(stop,), name="egress-guard-lease", daemon=True
    )
    thread.start()
    return thread


def run_loop(
    reconciler: Reconciler,
    elector: LeaderElector | None,
    *,
    interval_s: float,
    stop: threading.Event,
    on_report: ReportSink,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> None:
    """Reconcile every `interval_s` while leader, until `stop` is set (then give the lease up).

    `progress` is told after every round: a pass done, or (on a standby) the Lease looked at
    while the thread that renews it still runs.
    """
    beat = progress.beat if progress is not None else (lambda: None)

    def may_act() -> bool:
        """Before each write: a pass that writes is making progress (a first pass over a large
        cluster outlasts the stall limit), and SIGTERM stops it within one write, not after
        it, so the lease is released inside the pod's grace period."""
        beat()
        return not stop.is_set() and (elector is None or elector.is_leader())

    if elector is None:
        while not stop.is_set():
            on_report(reconciler.run_once(may_act=may_act))
            beat()
            stop.wait(interval_s)
        return
    elector_stop = threading.Event()
    elector_thread = _renew_in_background(elector, elector_stop)
    poll_s = min(elector.settings.retry_period_s / 2, interval_s)
    try:
        was_leader = False
        next_pass = clock()
        while not stop.is_set():
            leader = elector.is_leader()
            if leader and not was_leader:
                next_pass = clock()  # just became leader: catch up now
            was_leader = leader
            if leader and clock() >= next_pass:
                on_report(reconciler.run_once(may_act=may_act))
                next_pass = clock() + interval_s
            if elector_thread.is_alive():
                beat()
            stop.wait(poll_s)
    finally:
        elector_stop.set()
        elector_thread.join(elector.settings.retry_period_s * 2)
