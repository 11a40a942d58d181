"""Every object a namespace's egress is held by, across its backends: what admission ensures.

One function renders them for admission, the reconciler, `render`, `check` and `report`, so they
cannot disagree: per backend of the namespace, the default deny (NetworkPolicy, Cilium) and the
profile's objects (a NetworkPolicy, a CiliumNetworkPolicy, or Istio's ServiceEntries and
Sidecar). What a backend cannot say of a profile is never widened into something it can say: it
is left out, and said (`BACKEND_LIMITS`).
"""

from __future__ import annotations

from typing import Any

from webhook.core import cilium_policies, istio_objects
from webhook.core.backends import Backend, sidecars_alone
from webhook.core.decision import EnsureNetworkPolicies
from webhook.core.findings import BACKEND_LIMITS, Finding, Severity, Subject, detail
from webhook.core.namespace import NamespaceContext
from webhook.core.network_policies import (
    render_default_deny,
    render_profile,
    unexpressible,
)
from webhook.core.policy import Inject, Mode, Policy


def _rendered(
    namespace: str, backends: tuple[Backend, ...], policy: Policy, profile: str | None, all_: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    manifests: list[dict[str, Any]] = []
    unrendered: list[str] = []
    mesh = Backend.ISTIO in backends
    for backend in backends:
        if backend is Backend.NETWORKPOLICY:
            manifests.append(render_default_deny(namespace, policy, mesh=mesh))
            if profile is not None:
                manifests.append(
                    render_profile(namespace, profile, policy, namespace_injects_all=all_)
                )
        elif backend is Backend.CILIUM:
            manifests.append(cilium_policies.render_default_deny(namespace, policy, mesh=mesh))
            if profile is not None:
                rendered = cilium_policies.render_profile(
                    namespace, profile, policy, namespace_injects_all=all_
                )
                manifests += rendered.manifests
                unrendered += rendered.unrendered
        elif profile is not None:
            rendered = istio_objects.render_profile(
                namespace, profile, policy, namespace_injects_all=all_
            )
            manifests += rendered.manifests
            unrendered += rendered.unrendered
    return manifests, unrendered


def egress_intents(
    namespace: str, context: NamespaceContext, policy: Policy, profile: str | None
) -> tuple[EnsureNetworkPolicies, ...]:
    """The objects to ensure before a workload with `profile` (None: none) is admitted.

    Memoised on the policy object: the hot path renders each (namespace, profile, backends)
    once per policy version, not once per review.
    """
    if not context.inject.network_policies:
        return ()
    key = (egress_intents, namespace, profile, context.inject, context.mode, context.backends)
    cached = policy.memo.get(key)
    if cached is None:
        manifests, _ = _rendered(
            namespace, context.backends, policy, profile, context.inject is Inject.ALL
        )
        cached = (
            EnsureNetworkPolicies(
                namespace=namespace,
                manifests=tuple(manifests),
                required=context.mode is Mode.ENFORCE,
            ),
        )
        policy.memo[key] = cached
    return cached  # type: ignore[return-value]


def profile_findings(
    namespace: str, profile: str, context: NamespaceContext, policy: Policy
) -> tuple[Finding, ...]:
    """Advice on what the namespace's backends cannot say of a profile: host names where a
    NetworkPolicy holds the pods and Cilium does not (a NetworkPolicy drops the connections, a
    sidecar's too, unless the proxy is used), and what Cilium or Istio cannot render."""
    key = (profile_findings, namespace, profile, context.inject, context.backends)
    cached = policy.memo.get(key)
    if cached is None:
        all_ = context.inject is Inject.ALL
        found: list[Finding] = []
        if Backend.NETWORKPOLICY in context.backends and Backend.CILIUM not in context.backends:
            # a NetworkPolicy drops what it cannot allow, a sidecar's connections to a host
            # name among them: only Cilium, at the same level, allows names beside it
            found += unexpressible(profile, policy, namespace_injects_all=all_)
        _, unrendered = _rendered(namespace, context.backends, policy, profile, all_)
        found += [
            Finding(
                BACKEND_LIMITS,
                Severity.ADVICE,
                Subject("profile", profile),
                f"has {why}; left out",
                detail=detail(limit=why),
            )
            for why in unrendered
        ]
        if sidecars_alone(context.backends):
            found.append(istio_alone(profile))
        cached = tuple(found)
        policy.memo[key] = cached
    return cached  # type: ignore[return-value]


def istio_alone(profile: str) -> Finding:
    """Istio without a network-level backend: a pod that bypasses its sidecar is not held."""
    return Finding(
        BACKEND_LIMITS,
        Severity.ADVICE,
        Subject("profile", profile),
        "is held only by Istio's sidecar, which pods can bypass",
        "add networkpolicy or cilium",
        detail(limit="istio alone"),
    )
