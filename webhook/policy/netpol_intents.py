"""Which NetworkPolicies an admitted workload needs: an intent for the controller to carry out."""

from __future__ import annotations

from typing import Any

from webhook.policy.decision import EnsureNetworkPolicies
from webhook.policy.model import Inject, Mode, Policy
from webhook.policy.namespace import NamespaceContext
from webhook.policy.netpol import render_default_deny, render_profile


def network_policy_intents(
    namespace: str, context: NamespaceContext, policy: Policy, profile: str | None
) -> tuple[EnsureNetworkPolicies, ...]:
    """The default-deny policy, plus the profile's allow policy when the profile is known.

    Rendering is memoised on the policy object: the hot path renders each (namespace, profile)
    once per policy version, not once per review.
    """
    if not context.inject.network_policies:
        return ()
    key = ("intent", namespace, profile, context.inject, context.mode)
    cached = policy.memo.get(key)
    if cached is None:
        manifests: list[dict[str, Any]] = [render_default_deny(namespace, policy)]
        if profile is not None:
            manifests.append(
                render_profile(
                    namespace, profile, policy, namespace_injects_all=context.inject is Inject.ALL
                )
            )
        intent = EnsureNetworkPolicies(
            namespace=namespace,
            manifests=tuple(manifests),
            required=context.mode is Mode.ENFORCE,
        )
        cached = (intent,)
        policy.memo[key] = cached
    return cached  # type: ignore[return-value]
