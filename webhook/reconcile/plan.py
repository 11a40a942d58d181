"""What the reconciler should change: namespaces, their workloads' profiles and the generated
objects found -> creates, updates and deletes. Pure: the cluster layer reads and writes.

The desired state is the one admission produces: in every namespace whose effective inject
includes NetworkPolicies, per backend of the namespace the default deny, plus each profile's
objects for the profiles its workloads declare. Anything generated that is not desired is
pruned (when pruning is on): a namespace that opted out, a profile no longer used or no longer
defined, a backend no longer used. Exempt namespaces are never acted in, and only objects
carrying egress-guard's managed-by label are ever changed. Objects are told apart by kind and
name (`object_ref`): the NetworkPolicy and the CiliumNetworkPolicy share a name.

A namespace's opt-out is read from its labels and pruned at once. A profile policy in a namespace
that still wants NetworkPolicies is pruned only when it was found unused by the previous pass too
(`unused_before`): the workloads are listed a moment apart from the policies, so one pass can miss
a workload admitted meanwhile, whose policy admission has just ensured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.backends import Backend, generated_kind, object_ref
from webhook.core.checks.profile_label import declared_profile
from webhook.core.egress_objects import egress_intents
from webhook.core.namespace import NamespaceContext, namespace_context
from webhook.core.network_policies import is_generated, matches_rendered
from webhook.core.policy import Policy
from webhook.core.raw_object import section, text_at, where
from webhook.core.workloads import find_workload

NetworkPolicyIdentity = tuple[str, str, str]
"""(namespace, object_ref, uid) of a live generated object."""


@dataclass(frozen=True, slots=True)
class NamespaceState:
    """A namespace as the reconciler found it: its labels and the profiles its workloads use."""

    name: str
    labels: Mapping[str, str]
    profiles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Update:
    live: Mapping[str, Any]
    desired: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ReconcilePlan:
    """Changes to make, in the order to make them: creates, then updates, then deletes (so a
    namespace is never left with less than it had while its new policies are being made)."""

    creates: tuple[Mapping[str, Any], ...] = ()
    updates: tuple[Update, ...] = ()
    deletes: tuple[Mapping[str, Any], ...] = ()
    kept: tuple[tuple[str, str], ...] = ()
    """(namespace, object_ref) of generated objects no longer wanted but left, pruning being
    off."""
    in_place: int = 0
    unused: frozenset[NetworkPolicyIdentity] = frozenset()
    """Profile policies found unused in namespaces that still want NetworkPolicies: the next
    pass's `unused_before`."""
    deferred: tuple[tuple[str, str], ...] = ()
    """(namespace, object_ref) of profile objects unused for the first time: pruned next pass
    if they are still unused then."""
    retired: tuple[Mapping[str, Any], ...] = ()
    """Objects of a backend their namespace no longer uses: deleted once the objects of the
    backends it uses now are all in place (after this pass's creates and updates there
    succeeded), never before: a namespace moving to a backend whose objects cannot be made must
    keep the old ones."""

    @property
    def empty(self) -> bool:
        return not (self.creates or self.updates or self.deletes or self.retired)


def workload_profile(
    kind: str, obj: Mapping[str, Any], policy: Policy, group: str | None = None
) -> str | None:
    """The defined profile a live workload's pods declare (None for none, or one being deleted).

    `kind` and `group` come from the list the object was read from: list items carry no kind of
    their own.
    """
    metadata = section(obj, "metadata")
    if metadata.get("deletionTimestamp"):
        return None
    workload = find_workload(obj, kind, group=group)
    return declared_profile(workload, policy) if workload is not None else None


def desired_network_policies(state: NamespaceState, policy: Policy) -> dict[str, Mapping[str, Any]]:
    """The generated objects a namespace should have, by `object_ref` (none where exempt: an
    exempt namespace's context injects nothing)."""
    return _desired(state, namespace_context(state.name, state.labels, policy), policy)


def _desired(
    state: NamespaceState, context: NamespaceContext, policy: Policy
) -> dict[str, Mapping[str, Any]]:
    if not context.inject.network_policies:
        return {}
    wanted: dict[str, Mapping[str, Any]] = {}
    for profile in (None, *sorted(state.profiles)):
        if profile is not None and profile not in policy.profiles:
            continue
        for intent in egress_intents(state.name, context, policy, profile):
            for manifest in intent.manifests:
                wanted[object_ref(manifest)] = manifest
    return wanted


def _key(manifest: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, object_ref). Live objects carry their kind (the reader sets it on list
    items)."""
    return (where(manifest)[0], object_ref(manifest))


def _identity(manifest: Mapping[str, Any]) -> NetworkPolicyIdentity:
    """(namespace, object_ref, uid): an object deleted and made again is another object."""
    return (*_key(manifest), text_at(manifest, "metadata", "uid"))


def plan_reconcile(
    policy: Policy,
    namespaces: Iterable[NamespaceState],
    generated: Iterable[Mapping[str, Any]],
    *,
    prune: bool,
    unused_before: frozenset[NetworkPolicyIdentity] = frozenset(),
) -> ReconcilePlan:
    """The changes that bring the cluster to the desired state.

    `generated` is what lists of the generated kinds labelled managed-by=egress-guard returned
    (each item with its kind);
    anything in it without that label is ignored all the same, as is anything in a namespace not
    in `namespaces` (deleted meanwhile) or exempt. `unused_before` is the previous pass's
    `unused`: only a profile policy in it is pruned.
    """
    states = {state.name: state for state in namespaces}
    live: dict[tuple[str, str], Mapping[str, Any]] = {}
    for obj in generated:
        namespace, ref = _key(obj)
        if is_generated(obj) and namespace in states and namespace not in policy.exempt:
            live[(namespace, ref)] = obj
    creates: list[Mapping[str, Any]] = []
    updates: list[Update] = []
    in_place = 0
    wanted_keys: set[tuple[str, str]] = set()
    wanting: dict[str, tuple[Backend, ...]] = {}
    """Namespaces that want generated objects, and of which backends."""
    for name in sorted(states):
        context = namespace_context(name, states[name].labels, policy)
        wanted = _desired(states[name], context, policy)
        if wanted:
            wanting[name] = context.backends
        for policy_name, desired in sorted(wanted.items()):
            key = (name, policy_name)
            wanted_keys.add(key)
            current = live.get(key)
            if current is None:
                creates.append(desired)
            elif matches_rendered(current, desired):
                in_place += 1
            else:
                updates.append(Update(live=current, desired=desired))
    unwanted = [live[key] for key in sorted(live) if key not in wanted_keys]
    # an object of a backend its namespace still uses may be wanted by a workload admitted
    # since the workloads were listed; one of a backend no longer used never is
    unused = frozenset(
        _identity(obj)
        for obj in unwanted
        if generated_kind(obj).backend in wanting.get(_key(obj)[0], ())
    )
    retired = [
        obj
        for obj in unwanted
        if _key(obj)[0] in wanting and generated_kind(obj).backend not in wanting[_key(obj)[0]]
    ]
    due = [
        obj for obj in unwanted if _key(obj)[0] not in wanting or _identity(obj) in unused_before
    ]
    deferred = [obj for obj in unwanted if _identity(obj) in unused - unused_before]
    return ReconcilePlan(
        creates=tuple(creates),
        updates=tuple(updates),
        deletes=tuple(due) if prune else (),
        retired=tuple(retired) if prune else (),
        kept=() if prune else tuple(_key(obj) for obj in unwanted),
        in_place=in_place,
        unused=unused,
        deferred=tuple(_key(obj) for obj in deferred) if prune else (),
    )
