"""The interfaces through which the admission controller reaches the world.

The controller never imports the Kubernetes client: it is handed implementations of these, the
real ones (webhook.cluster.kube) in a cluster, the static ones (webhook.cluster.static) for local
runs, the offline CLI and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from webhook.core.decision import EnsureNetworkPolicies
from webhook.core.policy import Policy


class PolicySource(Protocol):
    """The policy in force now (it may be reloaded between reviews)."""

    def current(self) -> Policy: ...


class NamespaceUnavailable(Exception):
    """The namespace's labels could not be read (API down, refused, too slow)."""


class NamespaceSource(Protocol):
    def labels(self, namespace: str) -> Mapping[str, str] | None:
        """The namespace's labels, or None if there is no such namespace.

        Raises NamespaceUnavailable when the answer cannot be known.
        """
        ...


class NotEnsuredBecause(StrEnum):
    """Why NetworkPolicies could not be ensured: what refusing the workload then means."""

    TRANSIENT = "transient"
    """No answer in time, or conflicts without end: retrying shortly may succeed."""
    FOREIGN = "foreign"
    """A same-named NetworkPolicy egress-guard did not generate: the namespace's owner must
    rename or hand it over."""
    REFUSED = "refused"
    """The API refused egress-guard's request (RBAC, validation): its deployment is wrong."""
    NOT_SERVED = "not-served"
    """The cluster does not serve a backend's kind (its CRD is not installed): install the
    backend, or take it out of the policy file's backends."""


class NetworkPoliciesNotEnsured(Exception):
    """The NetworkPolicies could not be ensured, and why."""

    def __init__(self, message: str, because: NotEnsuredBecause = NotEnsuredBecause.TRANSIENT):
        super().__init__(message)
        self.because = because


@dataclass(frozen=True, slots=True)
class EnsureResult:
    """What ensuring an intent did. `reported` means no cluster was there to apply it to."""

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    reported: tuple[str, ...] = ()


class NetworkPolicyApplier(Protocol):
    def ensure(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        """Make the intent's NetworkPolicies exist as rendered, or raise
        NetworkPoliciesNotEnsured."""
        ...

    def check(self, intent: EnsureNetworkPolicies) -> EnsureResult:
        """What `ensure` would do, reading only (a dry run): what it would create, update or
        leave, or the NetworkPoliciesNotEnsured it would raise (a foreign same-named policy, an
        API that does not answer)."""
        ...


class WorkloadsUnavailable(Exception):
    """A namespace's workloads could not be listed (API down, forbidden, too slow)."""


@dataclass(frozen=True, slots=True)
class WorkloadListing:
    """A namespace's workloads (raw objects with kind set), and whether that is all of them:
    `complete` is False when the listing stopped at its limit or time budget."""

    workloads: tuple[Mapping[str, Any], ...]
    complete: bool = True


class WorkloadSource(Protocol):
    def workloads(self, namespace: str) -> WorkloadListing:
        """The namespace's Pods and workload objects, bounded in number and time.

        Raises WorkloadsUnavailable when nothing could be listed.
        """
        ...
