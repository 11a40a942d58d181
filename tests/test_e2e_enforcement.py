"""Enforcement integrity end to end: a tenant with the `edit` role tries every way around
"a workload reaches only what its profile declares", through the webhook configurations
`egress-guard manifests` renders, as kube-apiserver dispatches them (admission_dispatch.py), to
the real `egress-guard serve` (gunicorn over TLS). Every review the server answers is replayed
through `egress-guard check --review`, which must give the same answer.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from admission_dispatch import (
    DAEMONSETS,
    DEPLOYMENTS,
    NAMESPACES,
    NETWORK_POLICIES,
    PODS,
    AdmissionDispatch,
    Caller,
)
from builders import PROFILE, container, owned, pod, pod_spec, workload
from click.testing import CliRunner
from running_server import RunningServer, running_server

from webhook.cli.main import main
from webhook.config.policy_file import load_policy
from webhook.core.network_policies import render_default_deny
from webhook.deploy.objects import (
    DeployOptions,
    mutating_webhook_configuration,
    validating_webhook_configuration,
)

pytestmark = pytest.mark.e2e

TENANT = Caller("alice", ("team-a", "system:authenticated"))
PLATFORM = Caller("pat", ("platform", "system:authenticated"))
WEBHOOK = Caller.service_account("egress-guard", "egress-guard")
RECONCILER = Caller.service_account("egress-guard", "egress-guard-reconciler")
NAMESPACE_CONTROLLER = Caller.service_account("kube-system", "namespace-controller")

NAMESPACES_TABLE = {
    "payments": {"mode": "enforce", "inject": "networkpolicy"},
    "shop": {"mode": "enforce", "inject": "all"},
    "labels-only": {"mode": "enforce", "inject": "proxy"},
    "preview": {"mode": "warn", "inject": "networkpolicy"},
}


@dataclass
class Cluster:
    server: RunningServer
    policy_file: Path
    dispatch: AdmissionDispatch
    sent: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("enforcement")
    example = Path(__file__).resolve().parents[1] / "webhook" / "data" / "policy.example.yaml"
    document = yaml.safe_load(example.read_text())
    document["profiles"]["node-agent"] = {
        "hostNetwork": True,
        "secondaryNetworks": True,
        "namespaces": ["payments"],
    }
    document["profiles"]["world"] = {"allow": [{"cidr": "0.0.0.0/0", "ports": [443]}]}
    document["namespaces"] = NAMESPACES_TABLE
    document["governance"] = {
        "loosenNamespaces": {"groups": ["platform"]},
        "networkPolicyEditors": {"groups": ["platform"]},
    }
    policy_file = workdir / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(document))
    policy = load_policy(policy_file)
    configurations = [
        validating_webhook_configuration(policy, DeployOptions()),
        mutating_webhook_configuration(policy, DeployOptions()),
    ]
    labels = {name: policy.static_namespace_labels(name) or {} for name in NAMESPACES_TABLE}
    with running_server(workdir, "--config", str(policy_file)) as server:
        found = Cluster(server, policy_file, AdmissionDispatch(configurations, labels, server.send))

        def send(path: str, review: dict[str, Any]) -> tuple[int, Any]:
            status, body = server.send(path, review)
            found.sent.append((path, review, body))
            return status, body

        found.dispatch.send = send
        yield found


@pytest.fixture(autouse=True)
def check_gives_the_same_answers(cluster: Cluster, tmp_path: Path) -> Iterator[None]:
    """After each test, every review it sent goes through `egress-guard check --review`, which
    must answer exactly as the server did."""
    cluster.sent.clear()
    yield
    for index, (path, review, answer) in enumerate(cluster.sent):
        recorded = tmp_path / f"review-{index}.json"
        recorded.write_text(json.dumps(review))
        result = CliRunner().invoke(
            main,
            [
                "check",
                "--review",
                str(recorded),
                "--config",
                str(cluster.policy_file),
                "--action",
                path.strip("/"),
            ],
        )
        assert result.exit_code in (0, 1), result.output
        request = review["request"]
        assert json.loads(result.stdout)["response"] == answer["response"], (
            f"{path} {request['operation']} {request['kind']['kind']}"
        )


def create(cluster: Cluster, resource: Any, obj: dict[str, Any], namespace: str, **kw: Any) -> Any:
    caller = kw.pop("caller", TENANT)
    return cluster.dispatch.request(caller, "CREATE", resource, obj, namespace=namespace, **kw)


def host_network(profile: str) -> dict[str, Any]:
    obj = workload("DaemonSet", {PROFILE: profile}, name="agent")
    obj["spec"]["template"]["spec"]["hostNetwork"] = True
    return obj


# --- pods outside NetworkPolicy's reach ------------------------------------------------------


def test_a_host_network_pod_needs_a_profile_that_says_so(cluster: Cluster) -> None:
    refused = create(cluster, DAEMONSETS, host_network("none"), "payments")
    assert not refused.allowed
    assert "hostNetwork" in refused.message and "hostNetwork: true" in refused.message
    assert create(cluster, DAEMONSETS, host_network("node-agent"), "payments").allowed
    warned = create(cluster, DAEMONSETS, host_network("none"), "preview")
    assert warned.allowed and any("hostNetwork" in w for w in warned.warnings)


def test_turning_host_network_on_later_is_sent_and_refused(cluster: Cluster) -> None:
    old = workload("DaemonSet", {PROFILE: "none"}, name="agent")
    outcome = cluster.dispatch.request(
        TENANT, "UPDATE", DAEMONSETS, host_network("none"), old=old, namespace="payments"
    )
    assert not outcome.allowed and "hostNetwork" in outcome.message


def test_multus_networks_need_a_profile_that_says_so(cluster: Cluster) -> None:
    obj = workload("Deployment", {PROFILE: "none"}, name="router")
    obj["spec"]["template"]["metadata"]["annotations"] = {"k8s.v1.cni.cncf.io/networks": "sriov"}
    refused = create(cluster, DEPLOYMENTS, obj, "payments")
    assert not refused.allowed and "Multus" in refused.message


def test_under_inject_all_only_pods_that_use_the_proxy_get_its_variables(
    cluster: Cluster,
) -> None:
    none = create(cluster, PODS, pod({PROFILE: "none"}), "shop")
    assert none.allowed and "env" not in none.object["spec"]["containers"][0]
    stripe = create(cluster, PODS, pod({PROFILE: "stripe"}), "shop")
    names = {e["name"] for e in stripe.object["spec"]["containers"][0]["env"]}
    assert {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} <= names


# --- profiles changed behind the owner's back ------------------------------------------------


def owned_pod(profile: str) -> dict[str, Any]:
    return owned(pod({PROFILE: profile, "app": "web"}))


@pytest.mark.parametrize("subresource", ["", "status"], ids=["kubectl-label", "pods-status"])
def test_a_controllers_pod_cannot_be_relabelled(cluster: Cluster, subresource: str) -> None:
    outcome = cluster.dispatch.request(
        TENANT,
        "UPDATE",
        PODS,
        owned_pod("stripe"),
        old=owned_pod("none"),
        namespace="payments",
        subresource=subresource,
    )
    assert outcome.called == ["workloads.validate.egress-guard.io"]
    assert not outcome.allowed and "ReplicaSet 'web-1'" in outcome.message


def test_a_status_update_cannot_take_a_profile_away(cluster: Cluster) -> None:
    old = pod({PROFILE: "none"})
    outcome = cluster.dispatch.request(
        TENANT,
        "UPDATE",
        PODS,
        pod({"app": "web"}),
        old=old,
        namespace="payments",
        subresource="status",
    )
    assert not outcome.allowed and "has no egress profile" in outcome.message
    kubelet = copy.deepcopy(old)
    kubelet["status"] = {"phase": "Running"}
    quiet = cluster.dispatch.request(
        Caller("system:node:n1", ("system:nodes",)),
        "UPDATE",
        PODS,
        kubelet,
        old=old,
        namespace="payments",
        subresource="status",
    )
    assert quiet.allowed and quiet.called == [], "a kubelet's status update is never sent"


def test_a_crafted_review_without_an_object_is_refused(cluster: Cluster) -> None:
    for body in (None, [1], "x"):
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "crafted",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "namespace": "payments",
                "operation": "CREATE",
                "userInfo": TENANT.as_user_info(),
                "object": body,
            },
        }
        status, answer = cluster.server.send("/validate", review)
        assert status == 200
        assert answer["response"]["allowed"] is False
        assert answer["response"]["status"]["code"] == 403


# --- tenants' own NetworkPolicies ------------------------------------------------------------


def tenant_policy(egress: list[Any], selector: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "tenant-egress"},
        "spec": {"podSelector": selector or {}, "policyTypes": ["Egress"], "egress": egress},
    }


def test_a_tenants_network_policy_may_not_widen_egress(cluster: Cluster) -> None:
    refused = create(cluster, NETWORK_POLICIES, tenant_policy([{}]), "payments")
    assert refused.called == ["networkpolicies.validate.egress-guard.io"]
    assert not refused.allowed and "opens more than" in refused.message
    within = tenant_policy(
        [{"to": [{"ipBlock": {"cidr": "34.210.129.0/24"}}], "ports": [{"port": 443}]}],
        {"matchLabels": {PROFILE: "stripe"}},
    )
    assert create(cluster, NETWORK_POLICIES, within, "payments").allowed
    ingress = {**tenant_policy([]), "spec": {"podSelector": {}, "ingress": [{}]}}
    assert create(cluster, NETWORK_POLICIES, ingress, "payments").allowed
    warned = create(cluster, NETWORK_POLICIES, tenant_policy([{}]), "preview")
    assert warned.allowed and any("opens more than" in w for w in warned.warnings)


def test_generated_network_policies_are_egress_guards_alone(cluster: Cluster) -> None:
    policy = load_policy(cluster.policy_file)
    generated = render_default_deny("payments", policy)
    opened = copy.deepcopy(generated)
    opened["spec"]["egress"].append({})
    for operation, new in (("UPDATE", opened), ("DELETE", None)):
        refused = cluster.dispatch.request(
            TENANT, operation, NETWORK_POLICIES, new, old=generated, namespace="payments"
        )
        assert not refused.allowed, operation
        assert "egress-guard's" in refused.message
    for caller in (WEBHOOK, RECONCILER):
        own = cluster.dispatch.request(
            caller, "UPDATE", NETWORK_POLICIES, opened, old=generated, namespace="payments"
        )
        assert own.allowed and own.called == [], "egress-guard's own writes never reach it"
    for caller, operation in ((PLATFORM, "UPDATE"), (NAMESPACE_CONTROLLER, "DELETE")):
        new = opened if operation == "UPDATE" else None
        assert cluster.dispatch.request(
            caller, operation, NETWORK_POLICIES, new, old=generated, namespace="payments"
        ).allowed


# --- who may loosen a namespace --------------------------------------------------------------


def namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}},
    }


ENFORCING = {"egress-guard.io/mode": "enforce"}


@pytest.mark.parametrize(
    "after",
    [{}, {"egress-guard.io/mode": "warn"}, {**ENFORCING, "egress-guard.io/inject": "none"}],
    ids=["mode-removed", "mode-lowered", "inject-none"],
)
def test_only_the_platform_team_loosens_a_namespace(
    cluster: Cluster, after: dict[str, str]
) -> None:
    old, new = namespace("payments", ENFORCING), namespace("payments", after)
    refused = cluster.dispatch.request(TENANT, "UPDATE", NAMESPACES, new, old=old)
    assert "namespaces-loosening.validate.egress-guard.io" in refused.called
    assert not refused.allowed and "group platform" in refused.message
    assert cluster.dispatch.request(PLATFORM, "UPDATE", NAMESPACES, new, old=old).allowed


def test_tightening_is_anyones(cluster: Cluster) -> None:
    old, new = (
        namespace("preview", {"egress-guard.io/mode": "warn"}),
        namespace("preview", ENFORCING),
    )
    assert cluster.dispatch.request(TENANT, "UPDATE", NAMESPACES, new, old=old).allowed


# --- quieter holes ---------------------------------------------------------------------------


def test_env_from_that_may_set_the_proxy_is_warned_about(cluster: Cluster) -> None:
    obj = pod({PROFILE: "none"}, pod_spec(container(envFrom=[{"configMapRef": {"name": "env"}}])))
    outcome = create(cluster, PODS, obj, "labels-only")
    assert outcome.allowed and any("envFrom" in w for w in outcome.warnings)


def test_an_enforcing_namespace_without_network_policies_says_so(cluster: Cluster) -> None:
    outcome = create(cluster, DEPLOYMENTS, workload("Deployment", {PROFILE: "none"}), "labels-only")
    assert outcome.allowed and any("enforces labels only" in w for w in outcome.warnings)


def test_the_server_warns_about_an_open_profile_at_load(cluster: Cluster) -> None:
    messages = [
        json.loads(line)["msg"]
        for line in cluster.server.log().splitlines()
        if line.startswith("{")
    ]
    assert any(
        'profile "world" allows 0.0.0.0/0 without excepting 169.254.169.254/32' in m
        for m in messages
    )
