"""The interfaces through which the admission controller reaches the world.

The controller never imports the Kubernetes client: it is handed implementations of these, the
real ones (webhook.cluster.kube) in a cluster, the static ones (webhook.cluster.static) for local
runs, the offline CLI and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from webhook.policy.decision import EnsureNetworkPolicies
from webhook.policy.model import Policy


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


class PolicyApplyError(Exception):
    """The NetworkPolicies could not be ensured (API down, forbidden, conflicts without end)."""


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    """What ensuring an intent did. `reported` means no cluster was there to apply it to."""

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    reported: tuple[str, ...] = ()


class PolicyApplier(Protocol):
    def ensure(self, intent: EnsureNetworkPolicies) -> ApplyOutcome:
        """Make the intent's NetworkPolicies exist as rendered; raise PolicyApplyError if not."""
        ...
