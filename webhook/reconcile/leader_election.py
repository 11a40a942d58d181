"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

The holder renews `spec.renewTime` every retry period. A candidate takes the lease over only
when the holder's record has not changed for a whole `leaseDurationSeconds` by the candidate's
own clock (it never compares its clock with the holder's), or when the holder released it by
clearing `holderIdentity`. Every write names the resourceVersion read, so of two candidates
racing for a free lease exactly one wins; the other gets 409 Conflict.

A leader considers itself leader only until `renew_deadline_s` after its last successful
renewal, which is shorter than the lease duration: it stops acting before anyone else may start.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from webhook.cluster.api_calls import ApiRejected, ApiUnreachable, Deadline, call_json
from webhook.core.raw_object import JsonObject

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    namespace: str
    name: str
    identity: str
    duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.duration_s:
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration "
                f"(got {self.retry_period_s} < {self.renew_deadline_s} < {self.duration_s})"
            )
        if not self.identity:
            raise ValueError("leader election needs a non-empty identity")


def micro_time(moment: dt.datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires and renews one Lease for one identity."""

    def __init__(
        self,
        api: client.ApiClient,
        settings: LeaseSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._leases = client.CoordinationV1Api(api)
        self.settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self._renewed_at: float | None = None
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.holder: str | None = None
        """The holder last seen (this identity when leading)."""

    def is_leader(self) -> bool:
        renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.settings.renew_deadline_s

    def try_acquire_or_renew(self) -> bool:
        """One round: read the lease, then take or renew it if this identity may. Never raises;
        an API failure leaves leadership to expire at its renew deadline."""
        deadline = Deadline(self.settings.renew_deadline_s / 2)
        try:
            return self._round(deadline)
        except (ApiUnreachable, ApiRejected) as err:
            log.warning("lease %s: %s", self.settings.name, err)
            return self.is_leader()

    def release(self) -> None:
        """Give the lease up so that another candidate takes over at once, not after it expires."""
        if not self.is_leader():
            return
        self._renewed_at = None
        deadline = Deadline(self.settings.renew_deadline_s / 2)
        try:
            live = self._read(deadline)
            if live is None or _spec(live).get("holderIdentity") != self.settings.identity:
                return
            spec = {
                **_spec(live),
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": micro_time(self._wall_clock()),
            }
            self._replace(live, spec, deadline)
            log.info("lease %s released by %s", self.settings.name, self.settings.identity)
        except (ApiUnreachable, ApiRejected) as err:
            log.warning("lease %s not released (%s); it expires by itself", self.settings.name, err)

    def run(self, stop: threading.Event) -> None:
        """Keep trying and renewing every retry period until `stop`, then release."""
        try:
            while not stop.is_set():
                was_leader = self.is_leader()
                leading = self.try_acquire_or_renew()
                if leading and not was_leader:
                    log.info(
                        "lease %s: %s is the leader", self.settings.name, self.settings.identity
                    )
                elif was_leader and not leading:
                    log.warning("lease %s: leadership lost", self.settings.name)
                stop.wait(self.settings.retry_period_s)
        finally:
            self.release()

    # one round

    def _round(self, deadline: Deadline) -> bool:
        settings = self.settings
        started = self._clock()
        now = self._wall_clock()
        live = self._read(deadline)
        if live is None:
            fresh = {
                "holderIdentity": settings.identity,
                "leaseDurationSeconds": int(settings.duration_s),
                "acquireTime": micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": 0,
            }
            try:
                self._create(fresh, deadline)
            except ApiRejected as err:
                if err.already_exists:
                    return False  # another candidate created it first
                raise
            return self._won(settings.identity, started)
        spec = _spec(live)
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        duration = float(spec.get("leaseDurationSeconds") or settings.duration_s)
        held_elsewhere = holder and holder != settings.identity
        if held_elsewhere and self._clock() - self._observed_at < duration:
            self.holder = holder
            self._renewed_at = None
            return False
        renewed = {
            **spec,
            "holderIdentity": settings.identity,
            "leaseDurationSeconds": int(settings.duration_s),
            "renewTime": micro_time(now),
        }
        if holder != settings.identity:
            renewed["acquireTime"] = micro_time(now)
            renewed["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        try:
            self._replace(live, renewed, deadline)
        except ApiRejected as err:
            if err.conflict:
                return False  # someone else wrote it since it was read
            raise
        if holder != settings.identity:
            log.info(
                "lease %s acquired by %s (from %s)", settings.name, settings.identity, holder or "-"
            )
        return self._won(settings.identity, started)

    def _won(self, identity: str, started: float) -> bool:
        """Leadership counts from when the round began, not when the answer came: never later
        than the renewal the API server recorded."""
        self.holder = identity
        self._renewed_at = started
        return True

    def _read(self, deadline: Deadline) -> JsonObject | None:
        try:
            return call_json(
                self._leases.read_namespaced_lease,
                self.settings.name,
                self.settings.namespace,
                timeout=deadline.timeout(),
            )
        except ApiRejected as err:
            if err.not_found:
                return None
            raise

    def _create(self, spec: Mapping[str, Any], deadline: Deadline) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
            "spec": dict(spec),
        }
        call_json(
            self._leases.create_namespaced_lease,
            self.settings.namespace,
            body,
            timeout=deadline.timeout(),
        )

    def _replace(
        self, live: Mapping[str, Any], spec: Mapping[str, Any], deadline: Deadline
    ) -> None:
        metadata = live.get("metadata") or {}
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.settings.name,
                "namespace": self.settings.namespace,
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "spec": dict(spec),
        }
        call_json(
            self._leases.replace_namespaced_lease,
            self.settings.name,
            self.settings.namespace,
            body,
            timeout=deadline.timeout(),
        )


def _spec(lease: Mapping[str, Any]) -> dict[str, Any]:
    spec = lease.get("spec")
    return dict(spec) if isinstance(spec, Mapping) else {}
