"""RBAC for egress-guard: exactly the calls the webhook and the reconciler make, and no more.

Two service accounts, so that each process holds only what it uses:

- `<name>` runs `serve`. It reads namespaces (a GET for a namespace not seen yet, list and watch
  for its label cache), creates, reads and updates the objects it generates (NetworkPolicies, and
  the Cilium and Istio kinds when the policy file's `backends` name them), and lists and watches
  them so that one deleted or changed by hand is made again on the next admission; it never
  deletes one. It creates Events (each enforce-mode denial is recorded on the workload).
- `<name>-reconciler` runs `reconcile`. It lists namespaces and the generated objects
  cluster-wide, creates, updates and deletes (prunes) them, and holds one Lease, by name, in
  egress-guard's own namespace. It records no Events (its passes are in its log). With
  `reports.policyReports` in the policy file it also keeps one report per managed namespace
  (PolicyReports, or OpenReports Reports): list, create, update and delete on those alone.

Both list Pods and every workload kind (the built-in ones and the policy's `workloadKinds`), and
neither watches them: the reconciler cluster-wide, a page at a time, to learn which profiles are
in use; the webhook one namespace at a time, to preview what a namespace's new mode would refuse.
Nothing here can read Secrets or change a workload. RBAC cannot tell a generated NetworkPolicy
from a hand-made one, so the code never writes an object without egress-guard's managed-by
label.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.core.backends import by_group, kinds_of
from webhook.core.kube_names import reconciler_account_name
from webhook.core.policy import Policy
from webhook.core.raw_object import JsonObject
from webhook.core.workload_reports import REPORT_KINDS
from webhook.deploy.objects import DeployOptions, labels

Rule = tuple[str, Sequence[str], Sequence[str]]
"""(API group, resources, verbs)"""

WEBHOOK = "webhook"
RECONCILER = "reconciler"
"""The `app.kubernetes.io/component` of each process's objects (as on its Deployment)."""
COMPONENT_LABEL = "app.kubernetes.io/component"

WORKLOAD_READER_VERBS = ("list",)


def workload_reader_rules(policy: Policy) -> tuple[Rule, ...]:
    """list on every kind the webhook reviews (`Policy.reviewed_kinds`), by group."""
    grouped: dict[str, list[str]] = {}
    for kind in sorted(policy.reviewed_kinds, key=lambda k: (k.group, k.resource)):
        grouped.setdefault(kind.group, []).append(kind.resource)
    return tuple(
        (group, tuple(resources), WORKLOAD_READER_VERBS) for group, resources in grouped.items()
    )


WEBHOOK_GENERATED_VERBS = ("get", "list", "watch", "create", "update")
RECONCILER_GENERATED_VERBS = ("get", "list", "create", "update", "delete")


def generated_rules(policy: Policy, verbs: Sequence[str]) -> tuple[Rule, ...]:
    """`verbs` on the kinds the policy file's backends are made of, by group."""
    return tuple(
        (group, plurals, tuple(verbs))
        for group, _, plurals in by_group(kinds_of(policy.backend_set))
    )


def webhook_rules(policy: Policy) -> tuple[Rule, ...]:
    return (
        ("", ("namespaces",), ("get", "list", "watch")),
        *generated_rules(policy, WEBHOOK_GENERATED_VERBS),
        ("", ("events",), ("create",)),
    )


LEASE_GROUP = "coordination.k8s.io"


def reconciler_account(options: DeployOptions) -> str:
    return reconciler_account_name(options.name)


def lease_name(options: DeployOptions) -> str:
    """The Lease replicas of the reconciler compete for (`reconcile --lease-name`)."""
    return f"{options.name}-reconciler"


def _rules(rules: Sequence[Rule]) -> list[JsonObject]:
    return [
        {"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}
        for group, resources, verbs in rules
    ]


def _meta(
    options: DeployOptions, name: str, component: str | None, *, namespaced: bool = False
) -> JsonObject:
    """Labelled with the component that uses the object (None: both, so no component label)."""
    metadata: JsonObject = {"name": name}
    if namespaced:
        metadata["namespace"] = options.namespace
    found = labels(options, component or WEBHOOK)
    if component is None:
        del found[COMPONENT_LABEL]
    metadata["labels"] = found
    return metadata


def _subject(options: DeployOptions, account: str) -> JsonObject:
    return {"kind": "ServiceAccount", "name": account, "namespace": options.namespace}


def _cluster_role(
    options: DeployOptions, name: str, component: str | None, rules: Sequence[Rule]
) -> JsonObject:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(options, name, component),
        "rules": _rules(rules),
    }


def _binding(
    options: DeployOptions,
    kind: str,
    name: str,
    role_kind: str,
    accounts: Sequence[str],
    *,
    component: str | None,
) -> JsonObject:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": _meta(options, name, component, namespaced=kind == "RoleBinding"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [_subject(options, account) for account in accounts],
    }


def reconciler_rules(policy: Policy) -> tuple[Rule, ...]:
    """The reconciler's own rules, and the report kind's when the policy file asks for reports."""
    rules: tuple[Rule, ...] = (
        ("", ("namespaces",), ("list",)),
        *generated_rules(policy, RECONCILER_GENERATED_VERBS),
    )
    if not policy.reports.policy_reports:
        return rules
    kind = REPORT_KINDS[policy.reports.format]
    return (*rules, (kind.group, (kind.plural,), ("list", "create", "update", "delete")))


def rbac_manifests(options: DeployOptions, policy: Policy) -> list[JsonObject]:
    """The reconciler's ServiceAccount (the webhook's is in serviceaccount.yaml), the roles, and
    their bindings."""
    webhook, reconciler = options.name, reconciler_account(options)
    lease_role = f"{options.name}-leader-election"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(options, reconciler, RECONCILER, namespaced=True),
        },
        _cluster_role(options, f"{webhook}-webhook", WEBHOOK, webhook_rules(policy)),
        _cluster_role(options, f"{webhook}-reconciler", RECONCILER, reconciler_rules(policy)),
        _cluster_role(options, f"{webhook}-workload-reader", None, workload_reader_rules(policy)),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(options, lease_role, RECONCILER, namespaced=True),
            "rules": [
                # create cannot be limited by name (the object does not exist yet)
                {"apiGroups": [LEASE_GROUP], "resources": ["leases"], "verbs": ["create"]},
                {
                    "apiGroups": [LEASE_GROUP],
                    "resources": ["leases"],
                    "resourceNames": [lease_name(options)],
                    "verbs": ["get", "update"],
                },
            ],
        },
        _binding(
            options,
            "ClusterRoleBinding",
            f"{webhook}-webhook",
            "ClusterRole",
            [webhook],
            component=WEBHOOK,
        ),
        _binding(
            options,
            "ClusterRoleBinding",
            f"{webhook}-reconciler",
            "ClusterRole",
            [reconciler],
            component=RECONCILER,
        ),
        _binding(
            options,
            "ClusterRoleBinding",
            f"{webhook}-workload-reader",
            "ClusterRole",
            [webhook, reconciler],
            component=None,
        ),
        _binding(options, "RoleBinding", lease_role, "Role", [reconciler], component=RECONCILER),
    ]
