"""Who may loosen a namespace: lower its mode, remove it, change `inject` so that fewer
NetworkPolicies hold its pods, or narrow `backends` so that fewer systems do.

Whoever may update a Namespace (RBAC) may by default also switch egress-guard off for it. A
policy file that names `governance.loosenNamespaces` keeps that to those users and groups;
tightening is always allowed. The API server matches a Namespace's own labels with a webhook's
`namespaceSelector` as they are after the change, so an UPDATE that removes the mode label would
never reach a webhook selected that way: the rendered webhook selects namespaces by
`objectSelector`, which matches the old labels as well as the new.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.core.backends import backends_label_value
from webhook.core.decision import Decision, Verdict
from webhook.core.findings import Finding, Severity, Subject, detail, register
from webhook.core.namespace import NamespaceContext, namespace_context, namespace_labels
from webhook.core.policy import Mode, Policy, Principals
from webhook.core.raw_object import section
from webhook.core.request import AdmissionRequest

CHECK_ID = register(
    "namespace-loosening",
    "a namespace's mode lowered or inject weakened by someone the policy file does not name",
)

_STRENGTH = {None: 0, Mode.AUDIT: 1, Mode.WARN: 2, Mode.ENFORCE: 3}

GOVERNED_SUBRESOURCES = ("", "status", "finalize")
"""A Namespace's labels can change through its `status` and `finalize` subresources too (their
update strategies reset the spec or status, not the metadata): each is governed alike."""


@dataclass(frozen=True, slots=True)
class Loosening:
    """What an UPDATE takes away: before and after, in words."""

    what: str
    before: str
    after: str


def loosening(before: NamespaceContext, after: NamespaceContext) -> Loosening | None:
    """The way `after` enforces less than `before`, if it does."""
    if _STRENGTH[after.mode] < _STRENGTH[before.mode]:
        return Loosening(
            "mode",
            str(before.mode),  # never None here: nothing is weaker than no mode
            after.mode.value if after.mode else "(removed)",
        )
    if before.inject.network_policies and not after.inject.network_policies:
        return Loosening("inject", before.inject.value, after.inject.value)
    if after.inject.network_policies and not set(before.backends) <= set(after.backends):
        return Loosening(
            "backends", backends_label_value(before.backends), backends_label_value(after.backends)
        )
    return None


def review_namespace_change(request: AdmissionRequest, policy: Policy) -> Decision | None:
    """A refusal when an UPDATE loosens a namespace and its author is not among those the policy
    file allows; None for anything else (the namespace preview then answers)."""
    allowed_to = policy.governance.loosen_namespaces
    if (
        allowed_to is None
        or request.kind != "Namespace"
        or request.group
        or request.sub_resource not in GOVERNED_SUBRESOURCES
        or request.operation != "UPDATE"
        or request.object is None
        or request.old_object is None
    ):
        return None
    name = request.name or str(section(request.object, "metadata").get("name") or "")
    if name in policy.exempt:
        return None
    before = namespace_context(name, namespace_labels(request.old_object), policy)
    after = namespace_context(name, namespace_labels(request.object), policy)
    change = loosening(before, after)
    if change is None or allowed_to.include(request.user, request.groups):
        return None
    return Decision(Verdict.DENIED, (_refusal(name, change, request, allowed_to_text(allowed_to)),))


def allowed_to_text(allowed_to: Principals) -> str:
    names = [*(f"user {u}" for u in allowed_to.users), *(f"group {g}" for g in allowed_to.groups)]
    return ", ".join(names) or "no one"


def _refusal(name: str, change: Loosening, request: AdmissionRequest, who: str) -> Finding:
    label = change.what
    return Finding(
        CHECK_ID,
        Severity.VIOLATION,
        Subject("Namespace", name),
        f"may not have its egress-guard {label} loosened from {change.before} to {change.after} "
        f"by {request.user or 'an unknown user'}",
        f"ask one of: {who} (governance.loosenNamespaces in the policy file)",
        detail(label=label, before=change.before, after=change.after, user=request.user),
    )
