"""Reviewing manifests offline, exactly as the server would review them.

Each workload becomes the AdmissionRequest the API server would send for its creation and goes
through the same `AdmissionController` the HTTP server uses: namespace labels come from tables
(`StaticNamespaceSource`) and NetworkPolicies are reported, not applied
(`ReportingNetworkPolicyApplier`).
A Pod goes through the mutating webhook first and the validating webhook sees the patched Pod, as
in the API server.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from webhook.admission.controller import AdmissionController
from webhook.cli.input_files import InputObject
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import FixedPolicy
from webhook.core.backends import NETWORK_POLICY
from webhook.core.decision import Decision, errored
from webhook.core.evaluate import Action
from webhook.core.findings import NETWORK_POLICIES_REPORTED
from webhook.core.json_patch import PatchError, apply_patch
from webhook.core.kube_names import own_users
from webhook.core.policy import Inject, Mode, Policy
from webhook.core.raw_object import section
from webhook.core.request import AdmissionRequest
from webhook.core.workloads import containers, find_workload, group_of

DEFAULT_NAMESPACE = "default"
DEFAULT_DEPLOYMENT = "egress-guard"
"""The namespace and name `egress-guard manifests` deploys egress-guard under by default."""


@dataclass(frozen=True, slots=True)
class AssumedLabels:
    """The labels a namespace is assumed to have, and where that assumption comes from."""

    labels: Mapping[str, str] | None
    origin: str


def _label_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class NamespaceAssumptions:
    """Which labels each namespace has, offline.

    A Namespace object in the input supplies its own labels (that is what applying the manifests
    creates). Any other namespace gets the policy file's `namespaces` entry, with `--mode` and
    `--inject` overriding the keys they set; with neither, it has no labels (not managed).
    """

    def __init__(
        self,
        policy: Policy,
        namespace_objects: Mapping[str, InputObject] | None = None,
        mode: Mode | None = None,
        inject: Inject | None = None,
    ) -> None:
        self.policy = policy
        self._objects = dict(namespace_objects or {})
        self.flag_labels: dict[str, str] = {}
        if mode is not None:
            self.flag_labels[policy.mode_label] = mode.value
        if inject is not None:
            self.flag_labels[policy.inject_label] = inject.value

    def resolve(self, namespace: str) -> AssumedLabels:
        manifest = self._objects.get(namespace)
        if manifest is not None:
            raw = manifest.metadata.get("labels")
            labels = (
                {str(k): _label_text(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
            )
            return AssumedLabels(labels, f"the Namespace object at {manifest.source}")
        table = self.policy.static_namespace_labels(namespace)
        if self.flag_labels:
            flags = " and ".join(
                f"--{key.rpartition('/')[2]}" for key in sorted(self.flag_labels, reverse=True)
            )
            over = " over the policy file's namespaces table" if table else ""
            return AssumedLabels({**(table or {}), **self.flag_labels}, f"{flags}{over}")
        if table is not None:
            return AssumedLabels(dict(table), "the policy file's namespaces table")
        return AssumedLabels(
            None,
            "nowhere: no Namespace object in the input, no entry in the policy file, no --mode",
        )


def as_on_a_cluster(decision: Decision) -> Decision:
    """The decision as a real cluster gives it: without the findings that report the policies
    that would be created, which the offline output shows on their own."""
    if not any(f.check == NETWORK_POLICIES_REPORTED for f in decision.findings):
        return decision
    kept = tuple(f for f in decision.findings if f.check != NETWORK_POLICIES_REPORTED)
    return replace(decision, findings=kept)


def is_namespace(manifest: InputObject) -> bool:
    return manifest.kind == "Namespace" and manifest.api_version == "v1"


def is_network_policy_object(manifest: InputObject) -> bool:
    """A NetworkPolicy, which the server reviews in managed namespaces (it may widen egress)."""
    return manifest.kind == "NetworkPolicy" and manifest.api_version == "networking.k8s.io/v1"


def namespace_objects(manifests: list[InputObject]) -> dict[str, InputObject]:
    """The Namespace objects of the input by name (the last one wins, as with kubectl apply)."""
    found: dict[str, InputObject] = {}
    for manifest in manifests:
        name = manifest.metadata.get("name")
        if is_namespace(manifest) and isinstance(name, str) and name:
            found[name] = manifest
    return found


def namespace_of(obj: Mapping[str, Any], default: str | None) -> str:
    """The namespace an object lands in: its own, else the one asked for, else `default`."""
    metadata = section(obj, "metadata")
    own = metadata.get("namespace")
    if isinstance(own, str) and own:
        return own
    return default or DEFAULT_NAMESPACE


def creation_request(obj: Mapping[str, Any], namespace: str, uid: str) -> AdmissionRequest:
    """The AdmissionRequest the API server sends when `obj` is created in `namespace`."""
    api_version = str(obj.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    kind = str(obj.get("kind", ""))
    metadata = section(obj, "metadata")
    name = metadata.get("name")
    return AdmissionRequest(
        uid=uid,
        kind=kind,
        group=group,
        version=version,
        operation="CREATE",
        namespace=namespace,
        name=name if isinstance(name, str) else "",
        object=obj,
    )


def added_env(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Per container, the environment variables `after` has that `before` did not."""
    old_spec = section(before, "spec")
    new_spec = section(after, "spec")
    old_names: dict[tuple[str, int], set[str]] = {
        (list_name, index): _env_names(container)
        for list_name, index, container in containers(old_spec)
    }
    added: dict[str, tuple[str, ...]] = {}
    for list_name, index, container in containers(new_spec):
        old = old_names.get((list_name, index), set())
        new = tuple(name for name in _env_names_ordered(container) if name not in old)
        if new:
            label = container.get("name")
            added[label if isinstance(label, str) else f"{list_name}[{index}]"] = new
    return added


def _env_names_ordered(container: Mapping[str, Any]) -> list[str]:
    env = container.get("env")
    if not isinstance(env, list):
        return []
    return [e["name"] for e in env if isinstance(e, Mapping) and isinstance(e.get("name"), str)]


def _env_names(container: Mapping[str, Any]) -> set[str]:
    return set(_env_names_ordered(container))


@dataclass(frozen=True, slots=True)
class WorkloadReview:
    """What the server would answer for one workload, and what it would inject."""

    manifest: InputObject
    namespace: str
    name: str
    labels: AssumedLabels
    decision: Decision
    """The combined answer, as `kubectl apply` would see it (mutating, then validating)."""
    validation: Decision
    mutation: Decision | None = None
    """The mutating webhook's answer, for Pods."""
    patched: Mapping[str, Any] | None = None
    """The Pod after the mutating webhook, when it changed anything."""
    proxy_env: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Container name to proxy variables added: to the Pod, or to each pod the workload creates."""
    network_policies: tuple[Mapping[str, Any], ...] = ()
    """The egress objects that would be ensured before the workload is admitted: NetworkPolicies,
    and the Cilium or Istio objects of the namespace's other backends."""

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def is_pod(self) -> bool:
        return self.manifest.kind.lower() == "pod"

    @property
    def network_policy_names(self) -> tuple[str, ...]:
        """The NetworkPolicies alone, by name."""
        return tuple(
            str(m["metadata"]["name"])
            for m in self.network_policies
            if m["kind"] == NETWORK_POLICY.kind
        )


@dataclass(frozen=True, slots=True)
class NotSent:
    """A workload the API server would never send to egress-guard: the webhook rules rendered
    from this policy do not name its kind. `check` skips it, as the cluster would admit it
    unreviewed, rather than give a verdict the server never gives."""

    manifest: InputObject
    namespace: str
    name: str
    qualified_kind: str
    """`Kind.group`, as the summary counts it."""

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def reason(self) -> str:
        return (
            f"not sent to egress-guard: the webhook rules do not cover {self.qualified_kind} "
            "(declare it in the policy's workloadKinds and render the manifests again)"
        )


class OfflineReviewer:
    """Reviews workloads through an AdmissionController with static parts."""

    def __init__(self, assumptions: NamespaceAssumptions) -> None:
        self.assumptions = assumptions
        policies = FixedPolicy(assumptions.policy)
        self._namespaces = StaticNamespaceSource(policies, default=assumptions.flag_labels or None)
        self.controller = AdmissionController(
            policies=policies,
            namespaces=self._namespaces,
            network_policies=ReportingNetworkPolicyApplier(),
            # as deployed by `egress-guard manifests` with its defaults: a replayed review from
            # egress-guard's own service accounts gets the server's answer
            own_users=own_users(DEFAULT_DEPLOYMENT, DEFAULT_DEPLOYMENT),
        )
        self._resolved: dict[str, AssumedLabels] = {}

    def labels_for(self, namespace: str) -> AssumedLabels:
        """The namespace's assumed labels, recorded where the controller will look for them."""
        assumed = self._resolved.get(namespace)
        if assumed is None:
            assumed = self.assumptions.resolve(namespace)
            self._resolved[namespace] = assumed
            if assumed.labels is not None:
                self._namespaces.overrides[namespace] = assumed.labels
        return assumed

    def is_workload(self, manifest: InputObject) -> bool:
        return find_workload(manifest.obj, manifest.kind) is not None

    def not_sent(self, manifest: InputObject, default_namespace: str | None) -> NotSent | None:
        """The workload, when its kind is outside the webhook rules (`Policy.reviewed_kinds`)."""
        group = group_of(manifest.obj.get("apiVersion")) or ""
        if self.assumptions.policy.reviewed_kind(group, manifest.kind) is not None:
            return None
        name = section(manifest.obj, "metadata")
        return NotSent(
            manifest=manifest,
            namespace=namespace_of(manifest.obj, default_namespace),
            name=str(name.get("name") or name.get("generateName") or "<unnamed>"),
            qualified_kind=f"{manifest.kind}.{group}" if group else manifest.kind,
        )

    def review(self, manifest: InputObject, default_namespace: str | None) -> WorkloadReview:
        """The server's answer for creating this workload, mutating webhook first for Pods."""
        obj = manifest.obj
        namespace = namespace_of(obj, default_namespace)
        labels = self.labels_for(namespace)
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"egress-guard-check:{manifest.source!s}"))
        request = creation_request(obj, namespace, uid)
        name = request.object_name
        if manifest.kind.lower() != "pod":
            result = self.controller.review(request, Action.VALIDATE)
            if is_network_policy_object(manifest):
                return WorkloadReview(
                    manifest, namespace, name, labels, result.decision, result.decision
                )
            return WorkloadReview(
                manifest=manifest,
                namespace=namespace,
                name=name,
                labels=labels,
                decision=result.decision,
                validation=result.decision,
                proxy_env=self._template_proxy_env(obj, manifest.kind, namespace, uid),
                network_policies=_manifests(result.decision),
            )
        mutation = self.controller.review(request, Action.MUTATE).decision
        if not mutation.allowed:
            return WorkloadReview(manifest, namespace, name, labels, mutation, mutation, mutation)
        patched: dict[str, Any] | None = None
        if mutation.patch:
            try:
                patched = apply_patch(obj, mutation.patch)
            except PatchError as err:
                failed = errored(f"the mutating webhook's patch does not apply: {err}")
                return WorkloadReview(manifest, namespace, name, labels, failed, failed, mutation)
        validated = self.controller.review(
            replace(request, object=patched if patched is not None else obj), Action.VALIDATE
        ).decision
        combined = replace(validated, findings=(*mutation.findings, *validated.findings))
        return WorkloadReview(
            manifest=manifest,
            namespace=namespace,
            name=name,
            labels=labels,
            decision=combined,
            validation=validated,
            mutation=mutation,
            patched=patched,
            proxy_env=added_env(obj, patched) if patched is not None else {},
            network_policies=_manifests(validated),
        )

    def _template_proxy_env(
        self, obj: Mapping[str, Any], kind: str, namespace: str, uid: str
    ) -> dict[str, tuple[str, ...]]:
        """What the mutating webhook would add to each pod this workload creates."""
        workload = find_workload(obj, kind)
        if workload is None or workload.is_pod:
            return {}
        template = section(obj, *workload.template_path)
        metadata = dict(section(template, "metadata"))
        name = section(obj, "metadata")
        metadata.pop("name", None)
        metadata["generateName"] = f"{name.get('name') or 'pod'}-"
        metadata["namespace"] = namespace
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": workload.pod_spec}
        mutation = self.controller.review(
            creation_request(pod, namespace, uid), Action.MUTATE
        ).decision
        if not mutation.patch:
            return {}
        try:
            return added_env(pod, apply_patch(pod, mutation.patch))
        except PatchError:
            return {}


def _manifests(decision: Decision) -> tuple[Mapping[str, Any], ...]:
    if not decision.allowed:
        return ()
    return tuple(manifest for intent in decision.intents for manifest in intent.manifests)
