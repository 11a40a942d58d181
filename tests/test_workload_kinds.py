"""The one table of workload kinds: kinds matched by API group and kind, the policy's extra
`workloadKinds`, and every list derived from them (webhook rules, RBAC, the cluster listings,
the namespace preview, the metrics), which must agree with what the core treats as a workload
and with what `check` reviews."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import MODE, PROFILE, load_documents, ns_labels, pod, policy_with, request, workload
from click.testing import CliRunner
from kubernetes import client
from local_apiserver import RESOURCES, LocalApiServer, ResourceType
from pydantic import ValidationError

from webhook.cli.main import main
from webhook.cli.offline_review import FixedPolicy
from webhook.cluster.client import api_client
from webhook.cluster.kube_workloads import KubeWorkloadSource
from webhook.config.policy_file import PolicyFileError, parse_policy
from webhook.core.evaluate import validate
from webhook.core.namespace import namespace_context
from webhook.core.namespace_preview import NamespaceChange, preview
from webhook.core.policy import Policy
from webhook.core.workloads import BUILTIN_KINDS, GENERIC_TEMPLATE_PATH, find_workload
from webhook.deploy.rbac import workload_reader_rules
from webhook.http.metrics import KNOWN_KINDS
from webhook.reconcile.reconciler import Reconciler

ROLLOUT = {"group": "argoproj.io", "version": "v1alpha1", "kind": "Rollout", "resource": "rollouts"}
ROLLOUT_POLICY_TEXT = (
    "profiles:\n  none: {}\n  stripe: {}\n"
    "workloadKinds:\n"
    "  - {group: argoproj.io, version: v1alpha1, kind: Rollout, resource: rollouts}\n"
)
PLAIN_POLICY_TEXT = "profiles:\n  none: {}\n  stripe: {}\n"


@pytest.fixture(scope="module")
def rollout_policy(policy: Policy) -> Policy:
    return policy_with(policy, workloadKinds=[ROLLOUT])


def volcano_job(name: str = "train") -> dict[str, Any]:
    """A Volcano batch job: kind Job, but in batch.volcano.sh, its pods under spec.tasks."""
    return {
        "apiVersion": "batch.volcano.sh/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "minAvailable": 1,
            "tasks": [
                {
                    "name": "worker",
                    "replicas": 1,
                    "template": {"spec": {"containers": [{"name": "w", "image": "w:1"}]}},
                }
            ],
        },
    }


def widget(name: str = "gadget") -> dict[str, Any]:
    """A custom kind with a pod template at spec.template that no policy declares."""
    obj = workload("Deployment", {}, name=name)
    return {**obj, "apiVersion": "example.com/v1", "kind": "Widget"}


# --- the table and the core -----------------------------------------------------------------


@pytest.mark.parametrize("kind", BUILTIN_KINDS, ids=lambda k: k.kind)
def test_every_builtin_kind_is_a_workload_at_its_template_path(kind: Any) -> None:
    obj = workload(kind.kind, {PROFILE: "none"})
    assert obj["apiVersion"] == kind.api_version
    found = find_workload(obj, kind.kind, "web")
    assert found is not None
    assert found.template_path == kind.template_path
    assert found.pod_labels == {PROFILE: "none"}
    broken = {**obj, "spec": {}} if kind.template_path else {**obj, "metadata": {}}
    assert find_workload(broken, kind.kind, "web") is not None, "a built-in kind always counts"


@pytest.mark.parametrize(
    ("obj", "kind", "group", "expected"),
    [
        pytest.param(volcano_job(), "Job", None, None, id="volcano-job-is-not-a-batch-job"),
        pytest.param(
            {**volcano_job(), "apiVersion": "batch/v1", "spec": {}},
            "Job",
            None,
            ("spec", "template"),
            id="batch-job-with-a-broken-template-counts",
        ),
        pytest.param(
            {**workload("CronJob", {}), "apiVersion": "example.com/v1"},
            "CronJob",
            None,
            None,
            id="cronjob-of-another-group-has-no-job-template-path",
        ),
        pytest.param(
            workload("Rollout", {}), "Rollout", None, GENERIC_TEMPLATE_PATH, id="rollout-generic"
        ),
        pytest.param(
            {k: v for k, v in workload("CronJob", {}).items() if k != "apiVersion"},
            "CronJob",
            None,
            ("spec", "jobTemplate", "spec", "template"),
            id="no-api-version-kind-alone",
        ),
        pytest.param(
            {**workload("DaemonSet", {}), "apiVersion": "extensions/v1beta1", "spec": {}},
            "DaemonSet",
            None,
            ("spec", "template"),
            id="extensions-daemonset-is-the-apps-one",
        ),
        pytest.param(
            {**volcano_job(), "spec": {}},
            "Job",
            "batch",
            ("spec", "template"),
            id="the-group-given-wins-over-the-object",
        ),
    ],
)
def test_kinds_are_matched_by_group_and_kind(
    obj: dict[str, Any], kind: str, group: str | None, expected: tuple[str, ...] | None
) -> None:
    found = find_workload(obj, kind, "x", group)
    assert (found.template_path if found else None) == expected


def test_a_volcano_job_is_not_refused_as_a_job_without_a_template(policy: Policy) -> None:
    volcano = validate(request(volcano_job()), ns_labels("enforce"), policy)
    assert volcano.allowed and volcano.note == "not a workload"
    batch = {**volcano_job(), "apiVersion": "batch/v1"}
    refused = validate(request(batch), ns_labels("enforce"), policy)
    assert not refused.allowed and "spec.template.metadata.labels" in refused.message


# --- the policy file's workloadKinds --------------------------------------------------------


def test_declared_kinds_come_first_then_the_builtin_ones(rollout_policy: Policy) -> None:
    kinds = rollout_policy.reviewed_kinds
    assert [k.qualified for k in kinds[:2]] == ["Rollout.argoproj.io", "Deployment.apps"]
    assert kinds[1:] == BUILTIN_KINDS
    assert rollout_policy.reviewed_kind("argoproj.io", "Rollout") is kinds[0]
    assert rollout_policy.reviewed_kind("batch", "Job") is not None
    assert rollout_policy.reviewed_kind("batch.volcano.sh", "Job") is None
    # matchPolicy: Equivalent sends extensions/v1beta1 Deployments as apps/v1 ones
    assert rollout_policy.reviewed_kind("extensions", "Deployment") is kinds[1]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        pytest.param(
            {"group": "apps", "version": "v1", "kind": "Deployment", "resource": "deployments"},
            "workloadKinds: Deployment.apps is built in",
            id="builtin",
        ),
        pytest.param(
            {"group": "extensions", "version": "v1beta1", "kind": "ReplicaSet", "resource": "rs"},
            "workloadKinds: ReplicaSet.extensions is built in",
            id="builtin-under-an-older-group",
        ),
        pytest.param({**ROLLOUT, "group": ""}, "workloadKinds[0].group", id="core-group"),
        pytest.param({**ROLLOUT, "version": "1"}, "workloadKinds[0].version", id="version"),
        pytest.param({**ROLLOUT, "kind": "rollout"}, "workloadKinds[0].kind", id="kind"),
        pytest.param(
            {**ROLLOUT, "resource": "Rollouts"}, "workloadKinds[0].resource", id="resource"
        ),
        pytest.param({**ROLLOUT, "plural": "x"}, "workloadKinds[0].plural", id="unknown-field"),
        pytest.param(
            {k: v for k, v in ROLLOUT.items() if k != "resource"},
            "workloadKinds[0].resource",
            id="missing",
        ),
    ],
)
def test_a_bad_workload_kind_is_an_error_naming_the_field(
    entry: dict[str, str], message: str
) -> None:
    text = yaml.safe_dump({"workloadKinds": [entry]})
    with pytest.raises(PolicyFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_policy(text, "policy.yaml")


def test_a_kind_listed_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"Rollout\.argoproj\.io is listed twice"):
        Policy.model_validate({"workloadKinds": [ROLLOUT, {**ROLLOUT, "resource": "others"}]})
    with pytest.raises(ValidationError, match=r"rollouts\.argoproj\.io is listed twice"):
        Policy.model_validate({"workloadKinds": [ROLLOUT, {**ROLLOUT, "kind": "Other"}]})


# --- the lists derived from the table -------------------------------------------------------


def test_metrics_name_exactly_the_reviewed_kinds() -> None:
    """The built-in workload kinds, Namespaces and NetworkPolicies: what the webhooks are sent."""
    reviewed = {("", "Namespace"), ("networking.k8s.io", "NetworkPolicy")}
    assert reviewed | {k.key for k in BUILTIN_KINDS} == KNOWN_KINDS


@pytest.mark.parametrize("declared", [False, True], ids=["builtin", "with-rollout"])
def test_rbac_lets_egress_guard_list_every_reviewed_kind(
    policy: Policy, rollout_policy: Policy, declared: bool
) -> None:
    chosen = rollout_policy if declared else policy
    granted = {
        (group, resource)
        for group, resources, verbs in workload_reader_rules(chosen)
        if "list" in verbs
        for resource in resources
    }
    assert granted == {(k.group, k.resource) for k in chosen.reviewed_kinds}
    assert (("argoproj.io", "rollouts") in granted) is declared


def test_the_preview_lists_the_current_policys_kinds(rollout_policy: Policy) -> None:
    api = client.ApiClient()
    try:
        source = KubeWorkloadSource(api, policies=FixedPolicy(rollout_policy))
        assert source.kinds() == rollout_policy.reviewed_kinds
        assert [(kind, version) for kind, version, _ in source.lists] == [
            (k.kind, k.api_version) for k in rollout_policy.reviewed_kinds
        ]
        assert KubeWorkloadSource(api).kinds() == BUILTIN_KINDS
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _owned_by(obj: dict[str, Any], api_version: str, kind: str, name: str) -> dict[str, Any]:
    obj["metadata"]["ownerReferences"] = [
        {"apiVersion": api_version, "kind": kind, "name": name, "uid": "u", "controller": True}
    ]
    return obj


def _named_in_preview(objects: list[dict[str, Any]], policy: Policy) -> str:
    context = namespace_context("payments", {MODE: "enforce"}, policy)
    change = NamespaceChange("payments", context, created=False)
    decision = preview(change, objects, complete=True, policy=policy)
    return " | ".join(decision.warnings)


@pytest.mark.parametrize("declared", [False, True], ids=["undeclared", "declared"])
def test_the_preview_reports_through_an_owner_of_a_reviewed_kind_only(
    policy: Policy, rollout_policy: Policy, declared: bool
) -> None:
    rollout = workload("Rollout", {}, name="canary")
    replica_set = _owned_by(
        workload("ReplicaSet", {}, name="canary-6b9"), "argoproj.io/v1alpha1", "Rollout", "canary"
    )
    named = _named_in_preview([rollout, replica_set], rollout_policy if declared else policy)
    assert 'Rollout "canary"' in named
    assert ('ReplicaSet "canary-6b9"' in named) is not declared


def test_a_pod_of_a_volcano_job_is_not_hidden_behind_a_batch_job(policy: Policy) -> None:
    pod_of_volcano = _owned_by(
        pod({}, name="train-worker-0"), "batch.volcano.sh/v1alpha1", "Job", "x"
    )
    pod_of_job = _owned_by(pod({}, name="report-1-abc"), "batch/v1", "Job", "report-1")
    named = _named_in_preview([pod_of_volcano, pod_of_job], policy)
    assert 'Pod "train-worker-0"' in named
    assert 'Pod "report-1-abc"' not in named


# --- check and the webhook rules agree ------------------------------------------------------


def render_rules(policy_file: Path) -> set[tuple[str, str, str]]:
    """(group, version, resource) the rendered workload webhooks are sent, on CREATE and UPDATE;
    the enforce and preview webhooks must carry the same rules."""
    result = CliRunner().invoke(main, ["manifests", "--config", str(policy_file)])
    assert result.exit_code == 0, result.output
    (config,) = [
        d for d in load_documents(result.stdout) if d["kind"] == "ValidatingWebhookConfiguration"
    ]
    found: list[set[tuple[str, str, str]]] = []
    for hook in config["webhooks"]:
        if not hook["name"].startswith("workloads"):
            continue
        rules = [rule for rule in hook["rules"] if rule["resources"] != ["pods/status"]]
        assert len(rules) == len(hook["rules"]) - 1, "pods/status is sent too (its labels)"
        assert all(set(rule["operations"]) == {"CREATE", "UPDATE"} for rule in rules)
        found.append(
            {
                (group, version, resource)
                for rule in rules
                for group in rule["apiGroups"]
                for version in rule["apiVersions"]
                for resource in rule["resources"]
            }
        )
    assert len(found) == 2 and found[0] == found[1]
    return found[0]


CANDIDATES: list[tuple[dict[str, Any], str]] = [
    *((workload(kind.kind, {}, name=kind.resource), kind.resource) for kind in BUILTIN_KINDS),
    (workload("Rollout", {}, name="canary"), "rollouts"),
    (widget(), "widgets"),
]
"""Objects the core treats as workloads, each with its resource."""


@pytest.mark.parametrize(
    "policy_text", [PLAIN_POLICY_TEXT, ROLLOUT_POLICY_TEXT], ids=["plain", "with-rollout"]
)
def test_check_reviews_exactly_what_the_rendered_rules_send(
    tmp_path: Path, policy_text: str
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy_text)
    policy = parse_policy(policy_text, str(policy_file))
    rules = render_rules(policy_file)
    assert rules == {(k.group, k.version, k.resource) for k in policy.reviewed_kinds}
    for kind in policy.reviewed_kinds:
        obj = workload(kind.kind, {})
        assert find_workload(obj, kind.kind, "x") is not None, kind.kind

    manifests = tmp_path / "all.yaml"
    manifests.write_text(yaml.safe_dump_all([obj for obj, _ in CANDIDATES]))
    args = ["check", "-f", str(manifests), "--config", str(policy_file), "-n", "payments"]
    result = CliRunner().invoke(main, [*args, "--mode", "enforce", "-o", "json"])
    document = json.loads(result.stdout)
    reviewed = {item["name"]: item["verdict"] for item in document["items"]}
    skipped = {item["name"]: item["reason"] for item in document["notSent"]}
    for obj, resource in CANDIDATES:
        assert find_workload(obj, obj["kind"], "x") is not None
        name = obj["metadata"]["name"]
        group, _, version = obj["apiVersion"].rpartition("/")
        sent = (group, version, resource) in rules
        assert (name in reviewed) is sent, name
        assert (name in skipped) is not sent, name
        if sent:
            assert reviewed[name] == "denied", "no profile label, enforce mode"
        else:
            assert "workloadKinds" in skipped[name]
    declared = "workloadKinds" in policy_text
    assert ("canary" in reviewed) is declared
    assert document["summary"]["notSent"] == (
        {"Widget.example.com": 1}
        if declared
        else {"Rollout.argoproj.io": 1, "Widget.example.com": 1}
    )
    assert result.exit_code == 1


def test_a_rollout_check_skips_is_reported_with_the_reason(tmp_path: Path) -> None:
    manifests = tmp_path / "rollout.yaml"
    manifests.write_text(yaml.safe_dump(workload("Rollout", {}, name="canary")))
    args = ["check", "-f", str(manifests), "-n", "payments", "--mode", "enforce"]
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, "the API server would admit it unreviewed: nothing is denied"
    row = table.stdout.splitlines()[1]
    assert row.split()[:3] == ["payments", "Rollout/canary", "skipped"]
    assert "workloadKinds" in row
    assert table.stdout.splitlines()[-1].endswith(
        "1 workload skipped, not sent by the API server (1 Rollout.argoproj.io: not in "
        "workloadKinds)"
    )
    junit = CliRunner().invoke(main, [*args, "-o", "junit"])
    assert 'skipped="1"' in junit.stdout and "<skipped message=" in junit.stdout
    explained = CliRunner().invoke(main, ["explain", *args[1:]])
    assert explained.exit_code == 0
    assert explained.stdout.startswith("Rollout/canary in namespace payments")
    assert "the webhook rules do not cover Rollout.argoproj.io" in explained.stdout
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(ROLLOUT_POLICY_TEXT)
    declared = CliRunner().invoke(main, [*args, "--config", str(policy_file)])
    assert declared.exit_code == 1
    assert declared.stdout.splitlines()[1].split()[:3] == ["payments", "Rollout/canary", "denied"]


# --- the cluster listings -------------------------------------------------------------------

ROLLOUTS = ResourceType("argoproj.io", "v1alpha1", "rollouts", "Rollout", True, True)


@pytest.fixture
def argo_cluster(tmp_path: Path) -> Iterator[tuple[LocalApiServer, client.ApiClient]]:
    """A local API server that also serves Argo Rollouts: payments enforces and runs one Rollout
    on the stripe profile, and nothing else."""
    with LocalApiServer(resources=(*RESOURCES, ROLLOUTS), max_lifetime_s=60) as api:
        rollout = workload("Rollout", {PROFILE: "stripe"}, name="canary")
        rollout["metadata"]["namespace"] = "payments"
        payments = {"name": "payments", "labels": ns_labels("enforce")}
        api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": payments}, rollout)
        kube = api_client("kubeconfig", kubeconfig=str(api.kubeconfig(tmp_path / "kubeconfig")))
        api.reset_calls()
        try:
            yield api, kube
        finally:
            kube.close()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("declared", [False, True], ids=["undeclared", "declared"])
def test_the_reconciler_lists_the_declared_kinds_for_profiles_in_use(
    argo_cluster: tuple[LocalApiServer, client.ApiClient],
    policy: Policy,
    rollout_policy: Policy,
    declared: bool,
) -> None:
    api, kube = argo_cluster
    report = Reconciler(kube, FixedPolicy(rollout_policy if declared else policy)).run_once()
    assert report.errors == []
    names = {obj["metadata"]["name"] for obj in api.objects("networkpolicies", "payments")}
    assert "egress-guard-default-deny" in names
    assert ("egress-guard-profile-stripe" in names) is declared
    listed = {call.resource for call in api.calls if call.verb == "list"}
    assert {k.resource for k in BUILTIN_KINDS} <= listed
    assert ("rollouts" in listed) is declared


def test_a_declared_kind_the_cluster_does_not_serve_has_no_objects(
    local_api: LocalApiServer, kubeconfig: Path, rollout_policy: Policy
) -> None:
    local_api.seed(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "payments", "labels": ns_labels("enforce")},
        }
    )
    kube = api_client("kubeconfig", kubeconfig=str(kubeconfig))
    try:
        report = Reconciler(kube, FixedPolicy(rollout_policy)).run_once()
    finally:
        kube.close()  # type: ignore[no-untyped-call]
    assert report.errors == []
    assert report.created == ["payments/egress-guard-default-deny"]


def test_the_namespace_preview_lists_declared_kinds_from_the_cluster(
    argo_cluster: tuple[LocalApiServer, client.ApiClient], rollout_policy: Policy
) -> None:
    api, kube = argo_cluster
    listing = KubeWorkloadSource(kube, policies=FixedPolicy(rollout_policy)).workloads("payments")
    assert listing.complete
    assert [(o["kind"], o["apiVersion"], o["metadata"]["name"]) for o in listing.workloads] == [
        ("Rollout", "argoproj.io/v1alpha1", "canary")
    ]
    assert api.calls[0].resource == "rollouts", "declared kinds first: they own built-in ones"
