"""The admission path's `NetworkPolicyApplier`: ensure an intent's egress objects (NetworkPolicies,
and the Cilium or Istio objects of the namespace's backends) before answering.

Each object found or made in place is remembered per namespace, by namespace UID, kind, name and
content hash, so a namespace's later admissions make no API call at all. Only kinds that are
watched are remembered (`watching`): a backend added to the policy file after start-up is
ensured through the API on every admission until a restart watches it too. Memory that could let
a workload run with open egress is dropped as soon as the cluster says so:

- a namespace deleted (or recreated under the same name: another UID), or whose mode or inject
  label changed, is forgotten whole (`namespace_changed`, told by the namespace cache);
- a generated object deleted or changed by someone else is forgotten (`object_event`, from a
  watch on each generated kind), and a relist after a watch outage forgets whatever of its kind
  it no longer shows as rendered (`objects_listed`);
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
from webhook.cluster.egress_object_writer import (
    EgressObjectWriter,
    ForeignObject,
    KindNotServed,
    Written,
)
from webhook.cluster.namespaces import NamespaceEntry
from webhook.core.backends import (
    NETWORK_POLICY,
    GeneratedKind,
    generated_kind,
    object_ref,
    ref_of,
)
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
    """The objects known to be in place in one incarnation (UID) of a namespace, by
    `object_ref` (`name` for a NetworkPolicy, `Kind/name` for the others)."""

    uid: str
    policies: dict[str, _Known] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Pending:
    manifest: Mapping[str, Any]
    since: float


class NamespaceUids(Protocol):
    """What the applier needs of the namespace cache."""

    def uid(self, namespace: str) -> str | None: ...


class ClusterEgressObjectApplier:
    """Ensures generated egress objects through a writer, remembering those in place."""

    def __init__(
        self,
        writer: EgressObjectWriter,
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
        self._remembers: Callable[[GeneratedKind], bool] = lambda kind: kind is NETWORK_POLICY
        self._in_place: dict[str, _InPlace] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._evictions = 0
        """Bumped by every forgetting: a write that saw it happen is not remembered."""
        self._policy: Policy | None = None
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def trust(self, trusted: Callable[[], bool]) -> None:
        """Use memory only while `trusted()` (every watch of generated objects is following)."""
        self._trusted = trusted

    def watching(self, follows: Callable[[GeneratedKind], bool]) -> None:
        """Whether a watch follows a kind now (one of a CRD not installed does not): only what
        a watch follows is remembered, so that a change to it is seen."""
        self._remembers = follows

    # the NetworkPolicyApplier interface

    def ensure(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        policy = self._policies.current()
        if policy is not self._policy:
            with self._lock:
                self._policy = policy
                self._in_place = {}  # a new policy file: verify everything again, once
        namespace = intent.namespace
        uid = self._namespaces.uid(namespace)
        known = self._known(namespace, uid)
        if known is not None:
            in_place = _all_in_place(intent, known.policies)
            if in_place is not None:  # the hot path: every policy known, nothing to do
                return EnsureResult(unchanged=in_place)
        deadline = Deadline(self._budget_s, self._clock)
        return _each(
            intent, known, lambda manifest: self._ensure_one(namespace, uid, manifest, deadline)
        )

    def check(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        """A dry run's `ensure`: the objects known in place cost nothing, the others one read
        each, and nothing is written or remembered."""
        namespace = intent.namespace
        known = self._known(namespace, self._namespaces.uid(namespace))
        deadline = Deadline(self._budget_s, self._clock)
        return _each(intent, known, lambda manifest: self._inspect(namespace, manifest, deadline))

    def _known(self, namespace: str, uid: str | None) -> _InPlace | None:
        """What is remembered in place in this incarnation of the namespace, while trusted."""
        known = self._in_place.get(namespace) if self._trusted() else None
        return known if known is not None and known.uid == uid else None

    def _inspect(self, namespace: str, manifest: Mapping[str, Any], deadline: Deadline) -> Written:
        return self._translated(lambda: self._writer.inspect(manifest, deadline), manifest)

    def _ensure_one(
        self, namespace: str, uid: str | None, manifest: Mapping[str, Any], deadline: Deadline
    ) -> Written:
        ref = object_ref(manifest)
        kind = generated_kind(manifest)
        version = _version(manifest["metadata"].get("annotations"))
        key = (namespace, ref)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        if not lock.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise NetworkPoliciesNotEnsured(
                f"{kind.kind} {manifest['metadata']['name']} was still being ensured by another "
                f"admission after {self._budget_s:g} s"
            )
        try:
            if self._is_known(namespace, uid, ref, version):
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
                if self._evictions == evictions and uid is not None and self._remembers(kind):
                    self._remember(namespace, uid, ref, version, manifest)
            if result is not Written.UNCHANGED:
                log.info(
                    "%s %s/%s %s", kind.kind, namespace, manifest["metadata"]["name"], result.value
                )
            return result
        finally:
            lock.release()

    def _write(self, namespace: str, manifest: Mapping[str, Any], deadline: Deadline) -> Written:
        return self._translated(lambda: self._writer.ensure(manifest, deadline), manifest)

    def _translated(self, call: Callable[[], Written], manifest: Mapping[str, Any]) -> Written:
        """The writer's failures as NetworkPoliciesNotEnsured, with why."""
        try:
            return call()
        except ForeignObject as err:
            raise NetworkPoliciesNotEnsured(str(err), NotEnsuredBecause.FOREIGN) from None
        except KindNotServed as err:
            raise NetworkPoliciesNotEnsured(str(err), NotEnsuredBecause.NOT_SERVED) from None
        except ApiUnreachable as err:
            raise NetworkPoliciesNotEnsured(f"{err} (within {self._budget_s:g} s)") from None
        except ApiRejected as err:
            because = NotEnsuredBecause.TRANSIENT if err.conflict else NotEnsuredBecause.REFUSED
            raise NetworkPoliciesNotEnsured(_explain(err, manifest), because) from None

    def _is_known(self, namespace: str, uid: str | None, ref: str, version: Version) -> bool:
        known = self._known(namespace, uid)
        found = known.policies.get(ref) if known is not None else None
        return found is not None and found.version == version

    def _remember(
        self, namespace: str, uid: str, ref: str, version: Version, manifest: Mapping[str, Any]
    ) -> None:
        """Under the lock."""
        entry = self._in_place.get(namespace)
        if entry is None or entry.uid != uid:
            entry = self._in_place[namespace] = _InPlace(uid)
        entry.policies[ref] = _Known(version, manifest, self._clock())

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
            log.info("the egress objects of namespace %s will be ensured again", name)

    def object_event(
        self, event: str, obj: JsonObject, kind: GeneratedKind = NETWORK_POLICY
    ) -> None:
        """A watch event on a generated object of `kind`: forget it if it is gone or no longer
        as remembered (or as being written)."""
        namespace, name = where(obj)
        ref = ref_of(kind.kind, name)
        with self._lock:
            expected = self._expected(namespace, ref)
            if expected is None:
                return
            if event != "DELETED" and is_generated(obj) and matches_rendered(obj, expected):
                return
            self._forget(namespace, ref)
        log.info("%s %s/%s changed or gone; it will be ensured again", kind.kind, namespace, name)

    def objects_listed(
        self, items: list[JsonObject], asked: float, kind: GeneratedKind = NETWORK_POLICY
    ) -> None:
        """After a (re)list of `kind`: forget what of that kind the list does not show as
        remembered. Only what was remembered (or began being written) before the list was asked
        for can be judged by it; anything later is covered by the watch that follows the list."""
        live = {where(item): item for item in items}
        with self._lock:
            judged: list[tuple[str, str, Mapping[str, Any]]] = []
            for namespace, entry in self._in_place.items():
                for ref, known in entry.policies.items():
                    if known.at < asked and generated_kind(known.manifest) is kind:
                        judged.append((namespace, ref, known.manifest))
            for (namespace, ref), pending in self._pending.items():
                if pending.since < asked and generated_kind(pending.manifest) is kind:
                    judged.append((namespace, ref, pending.manifest))
            for namespace, ref, expected in judged:
                current = live.get((namespace, str(expected["metadata"]["name"])))
                if current is None or not matches_rendered(current, expected):
                    self._forget(namespace, ref)

    def _expected(self, namespace: str, ref: str) -> Mapping[str, Any] | None:
        """Under the lock: the rendering being written, else the one remembered."""
        pending = self._pending.get((namespace, ref))
        if pending is not None:
            return pending.manifest
        entry = self._in_place.get(namespace)
        found = entry.policies.get(ref) if entry is not None else None
        return found.manifest if found is not None else None

    def _forget(self, namespace: str, ref: str) -> None:
        """Under the lock."""
        self._evictions += 1
        entry = self._in_place.get(namespace)
        if entry is not None:
            entry.policies.pop(ref, None)
            if not entry.policies:
                del self._in_place[namespace]


def _each(
    intent: EnsureNetworkPolicies,
    known: _InPlace | None,
    act: Callable[[Mapping[str, Any]], Written],
) -> EnsureResult:
    """`act` on each of the intent's objects not remembered at its rendered version."""
    done: dict[Written, list[str]] = {state: [] for state in Written}
    for ref, manifest in zip(intent.names, intent.manifests, strict=True):
        version = _version(manifest["metadata"].get("annotations"))
        found = known.policies.get(ref) if known is not None else None
        in_place = found is not None and found.version == version
        done[Written.UNCHANGED if in_place else act(manifest)].append(ref)
    return EnsureResult(
        created=tuple(done[Written.CREATED]),
        updated=tuple(done[Written.UPDATED]),
        unchanged=tuple(done[Written.UNCHANGED]),
    )


def _all_in_place(
    intent: EnsureNetworkPolicies, policies: Mapping[str, _Known]
) -> tuple[str, ...] | None:
    """The intent's objects (`object_ref`s) if every one is remembered at its rendered version,
    else None. The rendering remembered is usually the very object the intent holds (intents
    are memoised per policy file), which is then its version without reading it again."""
    refs = intent.names
    for ref, manifest in zip(refs, intent.manifests, strict=True):
        found = policies.get(ref)
        if found is None:
            return None
        if found.manifest is not manifest and found.version != _version(
            manifest["metadata"].get("annotations")
        ):
            return None
    return refs


def _version(annotations: object) -> Version:
    if type(annotations) is not dict:  # decoded JSON; a dict check is cheap on the hot path
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in annotations.items()))


def _explain(err: ApiRejected, manifest: Mapping[str, Any]) -> str:
    if err.status in (401, 403):
        return (
            f"the Kubernetes API refused egress-guard's service account ({err.status} "
            f"{err.reason}): it needs create/get/update on "
            f"{generated_kind(manifest).qualified} in {manifest['metadata']['namespace']!r}; "
            "see deploy/rbac.yaml (`egress-guard manifests` renders it for the policy file's "
            "backends)"
        )
    return f"the Kubernetes API answered {err}"
