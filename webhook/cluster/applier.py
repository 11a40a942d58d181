"""The admission path's `PolicyApplier`: ensure an intent's NetworkPolicies before answering.

Each (namespace, name, content hash) found or made in place is remembered, so a namespace's
later admissions make no API call at all; the memory is dropped when the policy file changes.
Concurrent admissions that need the same policy wait for the one already ensuring it rather than
racing it, so a burst of new workloads creates each policy once. All of it happens within a time
budget well inside the webhook's timeout: an API server that is down or slow turns into a
PolicyApplyError quickly, which the controller turns into a denial in enforce mode.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from webhook.admission.ports import ApplyOutcome, PolicyApplyError, PolicySource
from webhook.cluster.api_calls import ApiRejected, ApiUnreachable, Deadline
from webhook.cluster.policy_writer import ForeignPolicy, PolicyWriter, Written
from webhook.policy.decision import EnsureNetworkPolicies
from webhook.policy.model import Policy

log = logging.getLogger(__name__)

ENSURE_BUDGET_S = 2.0
"""Well inside the API server's webhook timeout (10 s by default), with room for the lookup."""

PolicyKey = tuple[str, str, tuple[tuple[str, str], ...]]
"""(namespace, name, the rendering's annotations: its content hash)"""


class ClusterPolicyApplier:
    """Ensures generated NetworkPolicies through a PolicyWriter, remembering what is in place."""

    def __init__(
        self,
        writer: PolicyWriter,
        policies: PolicySource,
        *,
        budget_s: float = ENSURE_BUDGET_S,
    ) -> None:
        self._writer = writer
        self._policies = policies
        self._budget_s = budget_s
        self._in_place: set[PolicyKey] = set()
        self._policy: Policy | None = None
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def ensure(self, intent: EnsureNetworkPolicies) -> ApplyOutcome:
        policy = self._policies.current()
        if policy is not self._policy:
            self._policy = policy
            self._in_place = set()  # a new policy file: verify everything again, once
        deadline = Deadline(self._budget_s)
        written: dict[Written, list[str]] = {state: [] for state in Written}
        for manifest in intent.manifests:
            metadata = manifest["metadata"]
            name = str(metadata["name"])
            # The hash annotation is the manifest's version. Read it without the policy's label
            # prefix: the intent may come from the policy in force just before a reload.
            key = (intent.namespace, name, _version(metadata.get("annotations")))
            if key in self._in_place:
                written[Written.UNCHANGED].append(name)
                continue
            written[self._ensure_one(key, manifest, deadline)].append(name)
        return ApplyOutcome(
            created=tuple(written[Written.CREATED]),
            updated=tuple(written[Written.UPDATED]),
            unchanged=tuple(written[Written.UNCHANGED]),
        )

    def _ensure_one(
        self, key: PolicyKey, manifest: Mapping[str, Any], deadline: Deadline
    ) -> Written:
        namespace, name, _ = key
        with self._locks_lock:
            lock = self._locks.setdefault((namespace, name), threading.Lock())
        if not lock.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise PolicyApplyError(
                f"NetworkPolicy {name} was still being ensured by another admission after "
                f"{self._budget_s:g} s"
            )
        try:
            if key in self._in_place:
                return Written.UNCHANGED  # the admission we waited for put it in place
            try:
                result = self._writer.ensure(manifest, deadline)
            except ForeignPolicy as err:
                raise PolicyApplyError(str(err)) from None
            except ApiUnreachable as err:
                raise PolicyApplyError(f"{err} (within {self._budget_s:g} s)") from None
            except ApiRejected as err:
                raise PolicyApplyError(_explain(err, namespace)) from None
            self._in_place.add(key)
            if result is not Written.UNCHANGED:
                log.info("NetworkPolicy %s/%s %s", namespace, name, result.value)
            return result
        finally:
            lock.release()


def _version(annotations: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(annotations, Mapping):
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
