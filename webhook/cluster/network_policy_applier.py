"""The admission path's `NetworkPolicyApplier`: ensure an intent's NetworkPolicies before answering.

Each policy found or made in place is remembered per namespace, by namespace UID, name and
content hash, so a namespace's later admissions make no API call at all. Memory that could let a
workload run with open egress is dropped as soon as the cluster says so:

- a namespace deleted (or recreated under the same name: another UID), or whose mode or inject
  label changed, is forgotten whole (`namespace_changed`, told by the namespace cache);
- a generated policy deleted or changed by someone else is forgotten (`network_policy_event`, from a
  watch on the generated NetworkPolicies), and a relist after a watch outage forgets whatever it
  no longer shows as rendered (`network_policies_listed`);
- while that watch has been down longer than its bound, memory is not used at all (`trust`);
- a new policy file is verified again, once.

A policy being written when its deletion is seen is not remembered, so the race between a write
and an out-of-band delete always ends in one more ensure, never in a stale entry. Concurrent
admissions that need the same policy wait for the one already ensuring it rather than racing it,
so a burst of new workloads creates each policy once. All of it happens within a time budget
well inside the webhook's timeout: an API server that is down or slow turns into a
NetworkPoliciesNotEnsured quickly, which the controller turns into a denial in enforce mode.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from webhook.admission.budgets import NETWORK_POLICY_ENSURE_BUDGET_S
from webhook.admission.ports import (
    EnsureResult,
    NetworkPoliciesNotEnsured,
    NotEnsuredBecause,
    PolicySource,
)
from webhook.cluster.api_calls import ApiRejected, ApiUnreachable, Deadline
from webhook.cluster.namespaces import NamespaceEntry
from webhook.cluster.network_policy_writer import ForeignNetworkPolicy, NetworkPolicyWriter, Written
from webhook.core.decision import EnsureNetworkPolicies
from webhook.core.network_policies import is_generated, matches_rendered
from webhook.core.policy import Policy
from webhook.core.raw_object import JsonObject, where

log = logging.getLogger(__name__)


Version = tuple[tuple[str, str], ...]
"""A rendering's annotations: its content hash, read without the policy's label prefix."""


@dataclass(frozen=True, slots=True)
class _Known:
    version: Version
    manifest: Mapping[str, Any]
    at: float
    """When it was remembered (monotonic): a list asked for later reflects it."""


@dataclass(slots=True)
class _InPlace:
    """The policies known to be in place in one incarnation (UID) of a namespace."""

    uid: str
    policies: dict[str, _Known] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Pending:
    manifest: Mapping[str, Any]
    since: float


class NamespaceUids(Protocol):
    """What the applier needs of the namespace cache."""

    def uid(self, namespace: str) -> str | None: ...


class ClusterNetworkPolicyApplier:
    """Ensures generated NetworkPolicies through a writer, remembering those in place."""

    def __init__(
        self,
        writer: NetworkPolicyWriter,
        policies: PolicySource,
        namespaces: NamespaceUids,
        *,
        budget_s: float = NETWORK_POLICY_ENSURE_BUDGET_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = writer
        self._policies = policies
        self._namespaces = namespaces
        self._budget_s = budget_s
        self._clock = clock
        self._trusted: Callable[[], bool] = lambda: True
        self._in_place: dict[str, _InPlace] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._evictions = 0
        """Bumped by every forgetting: a write that saw it happen is not remembered."""
        self._policy: Policy | None = None
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def trust(self, trusted: Callable[[], bool]) -> None:
        """Use memory only while `trusted()` (the policy watch is following)."""
        self._trusted = trusted

    # the NetworkPolicyApplier interface

    def ensure(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        policy = self._policies.current()
        if policy is not self._policy:
            with self._lock:
                self._policy = policy
                self._in_place = {}  # a new policy file: verify everything again, once
        namespace = intent.namespace
        uid = self._namespaces.uid(namespace)
        known = self._in_place.get(namespace) if self._trusted() else None
        if known is not None and known.uid != uid:
            known = None
        if known is not None:
            in_place = _all_in_place(intent, known.policies)
            if in_place is not None:  # the hot path: every policy known, nothing to do
                return EnsureResult(unchanged=in_place)
        deadline = Deadline(self._budget_s, self._clock)
        written: dict[Written, list[str]] = {state: [] for state in Written}
        for manifest in intent.manifests:
            metadata = manifest["metadata"]
            name = str(metadata["name"])
            version = _version(metadata.get("annotations"))
            found = known.policies.get(name) if known is not None else None
            if found is not None and found.version == version:
                written[Written.UNCHANGED].append(name)
                continue
            written[self._ensure_one(namespace, uid, manifest, deadline)].append(name)
        return EnsureResult(
            created=tuple(written[Written.CREATED]),
            updated=tuple(written[Written.UPDATED]),
            unchanged=tuple(written[Written.UNCHANGED]),
        )

    def check(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        """A dry run's `ensure`: the policies known in place cost nothing, the others one read
        each, and nothing is written or remembered."""
        namespace = intent.namespace
        uid = self._namespaces.uid(namespace)
        known = self._in_place.get(namespace) if self._trusted() else None
        if known is not None and known.uid != uid:
            known = None
        deadline = Deadline(self._budget_s, self._clock)
        would: dict[Written, list[str]] = {state: [] for state in Written}
        for manifest in intent.manifests:
            name = str(manifest["metadata"]["name"])
            version = _version(manifest["metadata"].get("annotations"))
            found = known.policies.get(name) if known is not None else None
            if found is not None and found.version == version:
                would[Written.UNCHANGED].append(name)
                continue
            would[self._inspect(namespace, manifest, deadline)].append(name)
        return EnsureResult(
            created=tuple(would[Written.CREATED]),
            updated=tuple(would[Written.UPDATED]),
            unchanged=tuple(would[Written.UNCHANGED]),
        )

    def _inspect(self, namespace: str, manifest: Mapping[str, Any], deadline: Deadline) -> Written:
        return self._translated(lambda: self._writer.inspect(manifest, deadline), namespace)

    def _ensure_one(
        self, namespace: str, uid: str | None, manifest: Mapping[str, Any], deadline: Deadline
    ) -> Written:
        name = str(manifest["metadata"]["name"])
        version = _version(manifest["metadata"].get("annotations"))
        key = (namespace, name)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        if not lock.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise NetworkPoliciesNotEnsured(
                f"NetworkPolicy {name} was still being ensured by another admission after "
                f"{self._budget_s:g} s"
            )
        try:
            if self._is_known(namespace, uid, name, version):
                return Written.UNCHANGED  # the admission we waited for put it in place
            with self._lock:
                self._pending[key] = _Pending(manifest, self._clock())
                evictions = self._evictions
            try:
                result = self._write(namespace, manifest, deadline)
            except BaseException:
                with self._lock:
                    self._pending.pop(key, None)
                raise
            with self._lock:
                del self._pending[key]
                if self._evictions == evictions and uid is not None:
                    self._remember(namespace, uid, name, version, manifest)
            if result is not Written.UNCHANGED:
                log.info("NetworkPolicy %s/%s %s", namespace, name, result.value)
            return result
        finally:
            lock.release()

    def _write(self, namespace: str, manifest: Mapping[str, Any], deadline: Deadline) -> Written:
        return self._translated(lambda: self._writer.ensure(manifest, deadline), namespace)

    def _translated(self, call: Callable[[], Written], namespace: str) -> Written:
        """The writer's failures as NetworkPoliciesNotEnsured, with why."""
        try:
            return call()
        except ForeignNetworkPolicy as err:
            raise NetworkPoliciesNotEnsured(str(err), NotEnsuredBecause.FOREIGN) from None
        except ApiUnreachable as err:
            raise NetworkPoliciesNotEnsured(f"{err} (within {self._budget_s:g} s)") from None
        except ApiRejected as err:
            because = NotEnsuredBecause.TRANSIENT if err.conflict else NotEnsuredBecause.REFUSED
            raise NetworkPoliciesNotEnsured(_explain(err, namespace), because) from None

    def _is_known(self, namespace: str, uid: str | None, name: str, version: Version) -> bool:
        if not self._trusted():
            return False
        known = self._in_place.get(namespace)
        if known is None or known.uid != uid:
            return False
        found = known.policies.get(name)
        return found is not None and found.version == version

    def _remember(
        self, namespace: str, uid: str, name: str, version: Version, manifest: Mapping[str, Any]
    ) -> None:
        """Under the lock."""
        entry = self._in_place.get(namespace)
        if entry is None or entry.uid != uid:
            entry = self._in_place[namespace] = _InPlace(uid)
        entry.policies[name] = _Known(version, manifest, self._clock())

    # what the cluster says

    def namespace_changed(
        self, name: str, before: NamespaceEntry | None, after: NamespaceEntry | None
    ) -> None:
        """A namespace listener: forget a namespace deleted, recreated, or relabelled in a way
        that changes what egress-guard does in it."""
        if before is not None and after is not None and before.uid == after.uid:
            policy = self._policies.current()
            keys = (policy.mode_label, policy.inject_label)
            if all(before.labels.get(k) == after.labels.get(k) for k in keys):
                return
        with self._lock:
            gone = self._in_place.pop(name, None)
            if gone is not None or any(key[0] == name for key in self._pending):
                self._evictions += 1
            if after is None:  # deleted: nothing of it is worth keeping
                for key in [key for key in self._locks if key[0] == name]:
                    del self._locks[key]
        if gone is not None:
            log.info("NetworkPolicies of namespace %s will be ensured again", name)

    def network_policy_event(self, kind: str, obj: JsonObject) -> None:
        """A watch event on a generated NetworkPolicy: forget it if it is gone or no longer as
        remembered (or as being written)."""
        namespace, name = where(obj)
        with self._lock:
            expected = self._expected(namespace, name)
            if expected is None:
                return
            if kind != "DELETED" and is_generated(obj) and matches_rendered(obj, expected):
                return
            self._forget(namespace, name)
        log.info("NetworkPolicy %s/%s changed or gone; it will be ensured again", namespace, name)

    def network_policies_listed(self, items: list[JsonObject], asked: float) -> None:
        """After a (re)list: forget what the list does not show as remembered. Only what was
        remembered (or began being written) before the list was asked for can be judged by it;
        anything later is covered by the watch that follows the list."""
        live = {where(item): item for item in items}
        with self._lock:
            judged: list[tuple[str, str, Mapping[str, Any]]] = []
            for namespace, entry in self._in_place.items():
                for name, known in entry.policies.items():
                    if known.at < asked:
                        judged.append((namespace, name, known.manifest))
            for (namespace, name), pending in self._pending.items():
                if pending.since < asked:
                    judged.append((namespace, name, pending.manifest))
            for namespace, name, expected in judged:
                current = live.get((namespace, name))
                if current is None or not matches_rendered(current, expected):
                    self._forget(namespace, name)

    def _expected(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """Under the lock: the rendering being written, else the one remembered."""
        pending = self._pending.get((namespace, name))
        if pending is not None:
            return pending.manifest
        entry = self._in_place.get(namespace)
        found = entry.policies.get(name) if entry is not None else None
        return found.manifest if found is not None else None

    def _forget(self, namespace: str, name: str) -> None:
        """Under the lock."""
        self._evictions += 1
        entry = self._in_place.get(namespace)
        if entry is not None:
            entry.policies.pop(name, None)
            if not entry.policies:
                del self._in_place[namespace]


def _all_in_place(
    intent: EnsureNetworkPolicies, policies: Mapping[str, _Known]
) -> tuple[str, ...] | None:
    """The intent's policy names if every one is remembered at its rendered version, else None."""
    names = []
    for manifest in intent.manifests:
        metadata = manifest["metadata"]
        found = policies.get(metadata["name"])
        if found is None or found.version != _version(metadata.get("annotations")):
            return None
        names.append(str(metadata["name"]))
    return tuple(names)


def _version(annotations: object) -> Version:
    if type(annotations) is not dict:  # decoded JSON; a dict check is cheap on the hot path
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in annotations.items()))


def _explain(err: ApiRejected, namespace: str) -> str:
    if err.status in (401, 403):
        return (
            f"the Kubernetes API refused egress-guard's service account ({err.status} "
            f"{err.reason}): it needs create/get/update on networkpolicies in {namespace!r}; "
            "see deploy/rbac.yaml"
        )
    return f"the Kubernetes API answered {err}"
