"""Reviews of NetworkPolicies in managed namespaces: the rules that keep a tenant's own rights
(the built-in `edit` role may create, change and delete NetworkPolicies) from undoing what
egress-guard enforces.

- The NetworkPolicies egress-guard generates are changed and deleted by egress-guard alone (and
  whom the policy file's `governance.networkPolicyEditors` names), in every managed namespace:
  otherwise anyone with `edit` could widen a profile's policy, or delete the default-deny, until
  the next repair. Creating an object that claims egress-guard's label is refused too: it would
  pass for a generated policy.
- Any other NetworkPolicy whose egress rules open more than the selected pods' profiles allow
  widens those pods' egress (NetworkPolicies are additive). `governance.foreignNetworkPolicies`
  says what becomes of it: deny (under the namespace's mode), warn, or allow.
"""

from __future__ import annotations

from collections.abc import Mapping

from webhook.core.decision import Decision, Note, Verdict, allowed
from webhook.core.egress_coverage import uncovered
from webhook.core.findings import Finding, Severity, Subject, detail, register
from webhook.core.namespace import namespace_context
from webhook.core.network_policies import MANAGED_BY, MANAGED_BY_LABEL, is_generated
from webhook.core.policy import ForeignNetworkPolicies, Inject, Mode, Policy
from webhook.core.raw_object import section
from webhook.core.request import AdmissionRequest

GENERATED_CHANGED = register(
    "generated-network-policy",
    "a change to a NetworkPolicy egress-guard generates, by someone other than egress-guard",
)
FOREIGN_WIDENS = register(
    "foreign-network-policy",
    "a NetworkPolicy egress-guard did not generate that widens the egress of managed pods",
)

NAMESPACE_CLEANUP = frozenset(
    {
        "system:serviceaccount:kube-system:namespace-controller",
        "system:serviceaccount:kube-system:generic-garbage-collector",
        "system:kube-controller-manager",
    }
)
"""Who deletes everything in a namespace being deleted (kube-controller-manager, with or
without per-controller credentials): their DELETE of a generated policy must pass, or the
namespace never goes away."""


def is_network_policy(request: AdmissionRequest) -> bool:
    return request.kind == "NetworkPolicy" and request.group == "networking.k8s.io"


def review_network_policy(
    request: AdmissionRequest,
    labels: Mapping[str, str] | None,
    policy: Policy,
    own_users: frozenset[str],
) -> Decision:
    """The verdict on a NetworkPolicy CREATE, UPDATE or DELETE in `request.namespace`.

    `own_users` are egress-guard's own service accounts, as the API server names them.
    """
    if request.namespace in policy.exempt:
        return allowed(Note.EXEMPT)
    if request.sub_resource:
        return allowed(Note.SUBRESOURCE_NOT_CHECKED)
    if request.operation not in ("CREATE", "UPDATE", "DELETE"):
        return allowed(Note.OPERATION_NOT_CHECKED)
    namespace = namespace_context(request.namespace, labels, policy)
    if not namespace.managed:
        return allowed(Note.NOT_MANAGED)
    governance = policy.governance
    trusted = request.user in own_users or governance.network_policy_editors.include(
        request.user, request.groups
    )
    name = request.object_name if request.object is not None else _name(request)
    subject = Subject("NetworkPolicy", name)
    claims = (request.object is not None and is_generated(request.object)) or (
        request.old_object is not None and is_generated(request.old_object)
    )
    if claims:
        if trusted or (request.operation == "DELETE" and request.user in NAMESPACE_CLEANUP):
            return allowed(mode=namespace.mode)
        return Decision(
            Verdict.DENIED, (_generated_changed(request, subject, policy),), mode=namespace.mode
        )
    if (
        request.operation == "DELETE"
        or request.object is None
        or trusted
        or governance.foreign_network_policies is ForeignNetworkPolicies.ALLOW
        or not namespace.inject.network_policies
        or section(request.object, "metadata").get("deletionTimestamp")
    ):
        return allowed(mode=namespace.mode)
    injects_all = namespace.inject is Inject.ALL
    widening = uncovered(
        section(request.object, "spec"),
        request.namespace,
        policy,
        namespace_injects_all=injects_all,
    )
    if widening and request.operation == "UPDATE" and request.old_object is not None:
        widening = _newly_widening(widening, request, policy, injects_all=injects_all)
    if not widening:
        return allowed(mode=namespace.mode)
    findings = tuple(_widens(subject, index, profiles, policy) for index, profiles in widening)
    if governance.foreign_network_policies is ForeignNetworkPolicies.WARN:
        return Decision(Verdict.WARNED, findings, mode=namespace.mode)
    if namespace.mode is Mode.ENFORCE:
        return Decision(Verdict.DENIED, findings, mode=namespace.mode)
    if namespace.mode is Mode.WARN:
        return Decision(Verdict.WARNED, findings, mode=namespace.mode)
    return Decision(Verdict.AUDITED, findings, mode=namespace.mode)


def _newly_widening(
    widening: list[tuple[int, tuple[str | None, ...]]],
    request: AdmissionRequest,
    policy: Policy,
    *,
    injects_all: bool,
) -> list[tuple[int, tuple[str | None, ...]]]:
    """An UPDATE of a policy that already widened egress (made before the namespace enforced,
    or before a profile narrowed) may keep what it had, so that it can be narrowed, relabelled
    or finalized; it may not open a rule, or a rule to a profile, it did not open before."""
    new_rules = section(request.object, "spec").get("egress")
    old_spec = section(request.old_object, "spec")
    old_rules = old_spec.get("egress")
    if not isinstance(new_rules, list) or not isinstance(old_rules, list):
        return widening
    before = {
        (repr(old_rules[index]), profile)
        for index, profiles in uncovered(
            old_spec, request.namespace, policy, namespace_injects_all=injects_all
        )
        for profile in profiles
    }
    kept: list[tuple[int, tuple[str | None, ...]]] = []
    for index, profiles in widening:
        new = tuple(p for p in profiles if (repr(new_rules[index]), p) not in before)
        if new:
            kept.append((index, new))
    return kept


def _name(request: AdmissionRequest) -> str:
    if request.name:
        return request.name
    name = section(request.old_object, "metadata").get("name")
    return name if isinstance(name, str) and name else "<unnamed>"


def _generated_changed(request: AdmissionRequest, subject: Subject, policy: Policy) -> Finding:
    verb = {"CREATE": "created", "UPDATE": "changed", "DELETE": "deleted"}[request.operation]
    editors = policy.governance.network_policy_editors
    who = ", ".join([*editors.users, *editors.groups])
    hint = (
        "change the profile in the policy file instead; egress-guard keeps its NetworkPolicies"
        + (f" (editors: {who})" if who else "")
    )
    return Finding(
        GENERATED_CHANGED,
        Severity.VIOLATION,
        subject,
        f"is egress-guard's ({MANAGED_BY_LABEL}={MANAGED_BY}): it may not be {verb} by "
        f"{request.user or 'an unknown user'}",
        hint,
        detail(operation=request.operation, user=request.user),
    )


def _widens(
    subject: Subject, index: int, profiles: tuple[str | None, ...], policy: Policy
) -> Finding:
    named = tuple(p if p is not None else "(no profile)" for p in profiles)
    shown = ", ".join(named[:4]) + (f" and {len(named) - 4} more" if len(named) > 4 else "")
    return Finding(
        FOREIGN_WIDENS,
        Severity.VIOLATION,
        subject,
        f"egress rule {index + 1} opens more than the selected pods' profiles allow ({shown})",
        "narrow it to what their profiles allow, select only pods whose profile allows it "
        f"({policy.profile_label} in its podSelector), or extend the profile in the policy file",
        detail(rule=index, profiles=named),
        "narrow it to what their profiles allow",
    )
