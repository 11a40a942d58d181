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

With the Cilium and Istio backends the same holds for their kinds (the webhook is sent them when
the policy file names the backend): the generated CiliumNetworkPolicies, ServiceEntries and
Sidecars are egress-guard's alone; a tenant's CiliumNetworkPolicy with egress rules widens (Cilium
allows what any policy allows, and its rules are not checked against the profiles); a tenant's
Sidecar that selects workloads competes with the profile's (Istio applies one Sidecar to a pod,
and which one when two select it is undefined). A tenant's ServiceEntry is left alone: the
profiles' Sidecars name only the namespace's Services and their own entries, so one is refused
only where it would pass for a Service (a host under `.svc.<cluster domain>`), which those
Sidecars do name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from webhook.core.backends import (
    CILIUM_NETWORK_POLICY,
    GENERATED_KINDS,
    NETWORK_POLICY,
    SERVICE_ENTRY,
    SIDECAR,
    Backend,
)
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


REVIEWED_KINDS = frozenset((kind.group, kind.kind) for kind in GENERATED_KINDS)


def is_network_policy(request: AdmissionRequest) -> bool:
    """A NetworkPolicy, or an object of a kind another backend is made of (a
    CiliumNetworkPolicy, an Istio ServiceEntry or Sidecar)."""
    return (request.group, request.kind) in REVIEWED_KINDS


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
    subject = Subject(request.kind, name)
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
    if request.kind != NETWORK_POLICY.kind:
        found = _foreign_backend_object(
            request, subject, namespace.backends, policy.dns.cluster_domain
        )
        if found is None:
            return allowed(mode=namespace.mode)
        return _under_governance((found,), namespace.mode, policy)
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
    return _under_governance(findings, namespace.mode, policy)


def _under_governance(findings: tuple[Finding, ...], mode: Mode | None, policy: Policy) -> Decision:
    """A foreign object that widens egress: as `foreignNetworkPolicies` and the mode say."""
    if policy.governance.foreign_network_policies is ForeignNetworkPolicies.WARN:
        return Decision(Verdict.WARNED, findings, mode=mode)
    if mode is Mode.ENFORCE:
        return Decision(Verdict.DENIED, findings, mode=mode)
    if mode is Mode.WARN:
        return Decision(Verdict.WARNED, findings, mode=mode)
    return Decision(Verdict.AUDITED, findings, mode=mode)


_CILIUM_EGRESS = ("endpointSelector", "nodeSelector", "egress")
"""What of a CiliumNetworkPolicy rule says which pods may reach what (egressDeny only takes
away): an UPDATE that keeps all of it opens nothing new."""
_SIDECAR_REACH = ("workloadSelector", "egress", "outboundTrafficPolicy")


def _cilium_rules(obj: object) -> list[Mapping[str, object]]:
    """A CiliumNetworkPolicy's rules: `spec`, and each of `specs`."""
    rules = [section(obj, "spec")]
    specs = section(obj).get("specs")
    if isinstance(specs, list):
        rules += [rule for rule in specs if isinstance(rule, Mapping)]
    return rules


def _foreign_backend_object(
    request: AdmissionRequest, subject: Subject, backends: tuple[Backend, ...], domain: str
) -> Finding | None:
    """Why a tenant's Cilium or Istio object undoes a profile, or None."""
    if request.kind == CILIUM_NETWORK_POLICY.kind:
        return _cilium_widens(request, subject)
    if request.kind == SIDECAR.kind and Backend.ISTIO in backends:
        return _sidecar_competes(request, subject)
    if request.kind == SERVICE_ENTRY.kind and Backend.ISTIO in backends:
        return _entry_poses(request, subject, domain)
    return None  # where Istio is not used, no profile Sidecar of egress-guard's names anything


def _kept(request: AdmissionRequest, view: Callable[[object], object]) -> bool:
    """An UPDATE that keeps what already undid a profile may pass: it can then be narrowed,
    relabelled or finalized."""
    return request.old_object is not None and view(request.old_object) == view(request.object)


def _cilium_opens(obj: object) -> list[object]:
    return [rule.get(key) for rule in _cilium_rules(obj) for key in _CILIUM_EGRESS]


def _cilium_widens(request: AdmissionRequest, subject: Subject) -> Finding | None:
    if not any(rule.get("egress") for rule in _cilium_rules(request.object)):
        return None
    if _kept(request, _cilium_opens):
        return None
    return Finding(
        FOREIGN_WIDENS,
        Severity.VIOLATION,
        subject,
        "has egress rules, which Cilium adds to what the profiles allow (they are not "
        "checked against them)",
        "use egressDeny, or extend the profile in the policy file",
        detail(kind=request.kind),
        "use egressDeny, or extend the profile",
    )


def _sidecar_reach(obj: object) -> list[object]:
    return [section(obj, "spec").get(key) for key in _SIDECAR_REACH]


def _sidecar_competes(request: AdmissionRequest, subject: Subject) -> Finding | None:
    if not section(request.object, "spec").get("workloadSelector"):
        return None  # a namespace-wide Sidecar yields to the profiles' selecting ones
    if _kept(request, _sidecar_reach):
        return None
    return Finding(
        FOREIGN_WIDENS,
        Severity.VIOLATION,
        subject,
        "selects workloads, as the profiles' Sidecars do: Istio applies one of them, "
        "undefined which",
        "drop its workloadSelector (a namespace-wide Sidecar yields to the profiles')",
        detail(kind=request.kind),
        "drop its workloadSelector",
    )


def _poses(host: str, domain: str) -> bool:
    suffix = f".svc.{domain.lower()}"
    name = host.lower().rstrip(".")
    if name.endswith(suffix) or name == "*":
        return True
    return name.startswith("*.") and suffix.endswith(name[1:])


def _posing_hosts(obj: object, domain: str) -> tuple[str, ...]:
    hosts = section(obj, "spec").get("hosts")
    named = hosts if isinstance(hosts, list) else []
    return tuple(sorted(h for h in named if isinstance(h, str) and _poses(h, domain)))


def _entry_poses(request: AdmissionRequest, subject: Subject, domain: str) -> Finding | None:
    """A tenant's ServiceEntry whose host passes for a Service (`*.svc.<domain>`), which the
    profiles' Sidecars name: it would reach addresses of the tenant's choosing. Host names are
    compared as DNS compares them (any case, a trailing dot), and a wildcard that covers
    Services' names (`*.cluster.local`, `*.local`, `*`) passes for them too."""
    posing = _posing_hosts(request.object, domain)
    if not posing or _kept(request, lambda obj: _posing_hosts(obj, domain)):
        return None
    return Finding(
        FOREIGN_WIDENS,
        Severity.VIOLATION,
        subject,
        f"registers {', '.join(posing)}: names of Services, which the profiles' Sidecars allow, "
        "for addresses of its own choosing",
        "name the host outside the cluster domain, or add it to a profile",
        detail(kind=request.kind, hosts=posing),
        "name the host outside the cluster domain",
    )


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
