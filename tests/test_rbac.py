"""deploy/rbac.yaml: valid, as rendered, enough for every call egress-guard makes, and no more.

The local API server enforces the file's rules (evaluated as Kubernetes' RBAC authorizer does)
while the webhook's and the reconciler's real code paths run with their own service accounts:
nothing may be refused, and every permission granted must be one that those runs used (or one
listed below as planned, with the reason).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from builders import PROFILE, load_documents, ns_labels, request, workload
from local_apiserver import Call, LocalApiServer
from openapi_schema import assert_schema_valid

from webhook.admission.controller import AdmissionController
from webhook.cluster.client import api_client
from webhook.cluster.events import DenialEvents
from webhook.cluster.kube import connect
from webhook.cluster.kube_workloads import KubeWorkloadSource
from webhook.config.policy_file import PolicyStore, load_policy
from webhook.config.yaml_text import dump_documents
from webhook.core.evaluate import Action
from webhook.core.network_policies import render_default_deny, render_profile
from webhook.core.policy import Policy
from webhook.deploy.objects import DeployOptions
from webhook.deploy.rbac import lease_name, rbac_manifests
from webhook.deploy.tree import GENERATED
from webhook.reconcile.leader_election import LeaderElector, LeaseSettings
from webhook.reconcile.loop import reconcile_once
from webhook.reconcile.reconciler import Reconciler

RBAC_FILE = Path(__file__).resolve().parents[1] / "deploy" / "rbac.yaml"
WEBHOOK_USER = "system:serviceaccount:egress-guard:egress-guard"
RECONCILER_USER = "system:serviceaccount:egress-guard:egress-guard-reconciler"

PLANNED: set[tuple[str, str, str, str]] = set()
"""Permissions granted before the code that uses them exists (none: every grant is used)."""


@dataclass(frozen=True)
class Grant:
    user: str
    namespace: str | None
    """None: cluster-wide (a ClusterRoleBinding)."""
    group: str
    resource: str
    verb: str
    names: frozenset[str]


class Rbac:
    """Kubernetes' RBAC authorizer over a set of manifests (allow-only, as RBAC is)."""

    def __init__(self, documents: Iterable[Mapping[str, Any]]) -> None:
        docs = list(documents)
        roles = {
            (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs
        }
        self.grants: list[Grant] = []
        for binding in docs:
            if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
                continue
            scope = binding["metadata"].get("namespace")
            ref = binding["roleRef"]
            role_namespace = scope if ref["kind"] == "Role" else None
            role = roles[(ref["kind"], role_namespace, ref["name"])]
            for subject in binding["subjects"]:
                user = f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
                for rule in role["rules"]:
                    for group in rule["apiGroups"]:
                        for resource in rule["resources"]:
                            for verb in rule["verbs"]:
                                self.grants.append(
                                    Grant(
                                        user,
                                        scope,
                                        group,
                                        resource,
                                        verb,
                                        frozenset(rule.get("resourceNames", ())),
                                    )
                                )

    def allows(self, call: Call) -> bool:
        return any(self._covers(grant, call) for grant in self.grants)

    @staticmethod
    def _covers(grant: Grant, call: Call) -> bool:
        resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
        if (grant.user, grant.group, grant.resource, grant.verb) != (
            call.user,
            call.group,
            resource,
            call.verb,
        ):
            return False
        if grant.namespace is not None and grant.namespace != call.namespace:
            return False
        if grant.names:  # never matches create, list or watch: the name is not known
            return call.verb not in ("create", "list", "watch") and call.name in grant.names
        return True

    def granted(self) -> set[tuple[str, str, str, str]]:
        return {(g.user, g.group, g.resource, g.verb) for g in self.grants}


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    return load_documents(RBAC_FILE.read_text())


def test_the_file_is_the_rendering_of_the_rules(documents: list[dict[str, Any]]) -> None:
    comment = "what the webhook and the reconciler may do, and no more\n" + GENERATED
    assert RBAC_FILE.read_text() == dump_documents(
        rbac_manifests(DeployOptions(), load_policy(None)), comment
    )
    assert {d["kind"] for d in documents} == {
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "ClusterRoleBinding",
        "RoleBinding",
    }


def test_every_document_is_valid_for_the_kubernetes_schema(
    documents: list[dict[str, Any]],
) -> None:
    for document in documents:
        assert_schema_valid(document)


def test_nothing_reads_secrets_or_writes_workloads(documents: list[dict[str, Any]]) -> None:
    rbac = Rbac(documents)
    assert not any(g.resource in ("secrets", "*") or g.verb == "*" for g in rbac.grants)
    workload_resources = {"pods", "deployments", "statefulsets", "daemonsets", "jobs", "cronjobs"}
    assert all(g.verb in ("list", "watch") for g in rbac.grants if g.resource in workload_resources)
    assert not any(g.user == WEBHOOK_USER and g.verb == "delete" for g in rbac.grants), (
        "the webhook never deletes"
    )


@pytest.fixture
def enforcing(
    documents: list[dict[str, Any]], policy: Policy
) -> Iterator[tuple[LocalApiServer, Rbac]]:
    rbac = Rbac(documents)
    users = {"webhook-token": WEBHOOK_USER, "reconciler-token": RECONCILER_USER}
    with LocalApiServer(users=users, authorizer=rbac.allows, max_lifetime_s=120) as api:
        api.seed(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "egress-guard"}},
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "payments", "labels": ns_labels()},
            },
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "opted-out"}},
            {
                **workload("Deployment", {PROFILE: "internal"}, name="ledger"),
                "metadata": {"name": "ledger", "namespace": "payments"},
            },
            render_default_deny("opted-out", policy),
        )
        drifted = render_profile("payments", "stripe", policy)
        drifted["metadata"]["annotations"] = {"egress-guard.io/policy-hash": "stale"}
        api.seed(drifted)
        # for the reconciler: a drifted policy to update, and a hand-made same-named one that
        # its create runs into (then reads, and leaves alone)
        api.seed(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "shop", "labels": ns_labels()},
            },
            {
                **workload("Deployment", {PROFILE: "stripe"}, name="cart"),
                "metadata": {"name": "cart", "namespace": "shop"},
            },
            {**render_default_deny("shop", policy), "spec": {"podSelector": {}}},
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "egress-guard-profile-stripe", "namespace": "shop"},
                "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
            },
        )
        yield api, rbac


def test_the_roles_cover_every_call_and_grant_nothing_unused(
    enforcing: tuple[LocalApiServer, Rbac], tmp_path: Path
) -> None:
    api, rbac = enforcing
    webhook_config = api.kubeconfig(tmp_path / "webhook", "webhook-token")
    reconciler_config = api.kubeconfig(tmp_path / "reconciler", "reconciler-token")

    policies = PolicyStore(None)
    connection = connect("kubeconfig", policies, kubeconfig=str(webhook_config))
    try:
        assert connection.namespaces.synced.wait(10)
        assert connection.synced(10)
        deadline = time.monotonic() + 5
        while (
            not (api.count("watch", "namespaces") and api.count("watch", "networkpolicies"))
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)  # each watch request follows its list
        connection.namespaces.labels("created-later")  # a namespace not seen yet: one GET
        controller = AdmissionController(
            policies, connection.namespaces, connection.network_policies
        )
        outcome = controller.review(
            request(workload("Deployment", {PROFILE: "stripe"}), namespace="payments"),
            Action.VALIDATE,
        )
        assert outcome.decision.allowed, outcome.decision.message
        assert outcome.applied[0].created and outcome.applied[0].updated
        assert KubeWorkloadSource(connection.api).workloads("payments").complete
        events = DenialEvents(connection.api)
        refused = request(workload("Deployment", {"app": "x"}), namespace="payments")
        events.observe(refused, Action.VALIDATE, controller.review(refused, Action.VALIDATE))
        deadline = time.monotonic() + 5
        while not events.written and time.monotonic() < deadline:
            time.sleep(0.02)
        assert events.written == 1
    finally:
        connection.close()

    kube = api_client("kubeconfig", kubeconfig=str(reconciler_config))
    settings = LeaseSettings(
        namespace="egress-guard",
        name=lease_name(DeployOptions()),
        identity="replica-1",
        duration_s=3,
        renew_deadline_s=2,
        retry_period_s=0.5,
    )
    report = reconcile_once(Reconciler(kube, policies), LeaderElector(kube, settings))
    assert report is not None and not report.errors, report
    assert report.created and report.updated and report.deleted
    assert report.refused == ["shop/egress-guard-profile-stripe"]
    kube.close()

    refused = [call for call in api.calls if call.status in (401, 403)]
    assert refused == []
    used = {(c.user, c.group, c.resource, c.verb) for c in api.calls}
    assert rbac.granted() - used == PLANNED


def test_each_object_is_labelled_with_the_component_that_uses_it(
    documents: list[dict[str, Any]],
) -> None:
    components = {
        (d["kind"], d["metadata"]["name"]): d["metadata"]["labels"].get(
            "app.kubernetes.io/component"
        )
        for d in documents
    }
    assert components == {
        ("ServiceAccount", "egress-guard-reconciler"): "reconciler",
        ("ClusterRole", "egress-guard-webhook"): "webhook",
        ("ClusterRole", "egress-guard-reconciler"): "reconciler",
        ("ClusterRole", "egress-guard-workload-reader"): None,  # both use it
        ("Role", "egress-guard-leader-election"): "reconciler",
        ("ClusterRoleBinding", "egress-guard-webhook"): "webhook",
        ("ClusterRoleBinding", "egress-guard-reconciler"): "reconciler",
        ("ClusterRoleBinding", "egress-guard-workload-reader"): None,
        ("RoleBinding", "egress-guard-leader-election"): "reconciler",
    }
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "egress-guard"
               for d in documents)  # fmt: skip


def test_what_is_not_granted_is_refused(enforcing: tuple[LocalApiServer, Rbac]) -> None:
    _, rbac = enforcing

    def allowed(user: str, verb: str, group: str, resource: str, **where: str) -> bool:
        return rbac.allows(Call(verb=verb, group=group, resource=resource, user=user, **where))

    assert not allowed(WEBHOOK_USER, "delete", "networking.k8s.io", "networkpolicies", name="x")
    assert not allowed(WEBHOOK_USER, "create", "coordination.k8s.io", "leases", namespace="eg")
    assert not allowed(
        RECONCILER_USER, "get", "coordination.k8s.io", "leases", namespace="egress-guard", name="x"
    )
    assert not allowed(
        RECONCILER_USER, "create", "coordination.k8s.io", "leases", namespace="default"
    )
    assert not allowed(RECONCILER_USER, "update", "", "namespaces", name="payments")
    assert not allowed(RECONCILER_USER, "create", "", "events", namespace="payments")
    assert not allowed(WEBHOOK_USER, "watch", "", "pods", namespace="payments")
    assert not allowed(RECONCILER_USER, "watch", "apps", "deployments", namespace="payments")
    assert allowed(
        RECONCILER_USER,
        "update",
        "coordination.k8s.io",
        "leases",
        namespace="egress-guard",
        name="egress-guard-reconciler",
    )
