"""The reconciler's PolicyReports (and OpenReports Reports): one per managed namespace, a result
per workload, kept in place, deleted on opt-out; a missing CRD said once. Local API server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from builders import PROFILE, namespace, ns_labels, placed, policy_with, workload
from kubernetes import client
from local_apiserver import RESOURCES, LocalApiServer, ResourceType

from webhook.cluster.client import api_client
from webhook.config.policy_file import FixedPolicy
from webhook.core.policy import Policy
from webhook.deploy.objects import DeployOptions
from webhook.deploy.rbac import rbac_manifests
from webhook.reconcile.reconciler import Reconciler

CRDS = Path(__file__).resolve().parents[2] / "shared/corpus/crds"
REPORT_RESOURCES = (
    ResourceType("wgpolicyk8s.io", "v1alpha2", "policyreports", "PolicyReport", namespaced=True),
    ResourceType("openreports.io", "v1alpha1", "reports", "Report", namespaced=True),
)


@pytest.fixture
def reporting_api() -> Iterator[LocalApiServer]:
    """The local API server with the PolicyReport and OpenReports CRDs installed."""
    with LocalApiServer(resources=RESOURCES + REPORT_RESOURCES, max_lifetime_s=120) as api:
        api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "egress-guard"}})
        yield api


def connect(api: LocalApiServer, tmp_path: Path) -> client.ApiClient:
    return api_client("kubeconfig", kubeconfig=str(api.kubeconfig(tmp_path / "kubeconfig")))


def reporting(policy: Policy, format: str = "policyreport") -> FixedPolicy:
    return FixedPolicy(policy_with(policy, reports={"policyReports": True, "format": format}))


def seed_namespaces(api: LocalApiServer) -> None:
    owned = placed(workload("Pod", {}, name="api-7d9f-x2x"), "payments")
    owned["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "api-7d9f",
            "uid": "1f0c8f8e-4d43-4c3b-9f62-0a1b2c3d4e5f",
            "controller": True,
        }
    ]
    api.seed(
        namespace("payments", ns_labels("enforce")),
        namespace("staging", ns_labels("warn")),
        namespace("unmanaged", {}),
        namespace("kube-system", ns_labels("enforce")),  # exempt
        placed(workload("Deployment", {PROFILE: "stripe"}, name="api"), "payments"),
        placed(workload("CronJob", {}, name="cleanup"), "payments"),
        owned,
        placed(workload("Deployment", {PROFILE: "nonsense"}, name="web"), "staging"),
        placed(workload("Deployment", {}, name="free"), "unmanaged"),
        placed(workload("Deployment", {}, name="dns"), "kube-system"),
    )


def reports(api: LocalApiServer, plural: str = "policyreports") -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["namespace"]: obj for obj in api.objects(plural)}


def by_workload(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        f"{r['resources'][0]['kind']}/{r['resources'][0]['name']}": (r["result"], r["rule"])
        for r in report["results"]
    }


class TestPolicyReports:
    def test_one_report_per_managed_namespace_with_a_result_per_workload(
        self, reporting_api: LocalApiServer, tmp_path: Path, policy: Policy
    ) -> None:
        seed_namespaces(reporting_api)
        pass_report = Reconciler(connect(reporting_api, tmp_path), reporting(policy)).run_once()
        assert pass_report.complete, pass_report.errors
        assert sorted(pass_report.reports_written) == ["payments", "staging"]
        found = reports(reporting_api)
        assert sorted(found) == ["payments", "staging"]
        payments = found["payments"]
        assert payments["metadata"]["name"] == "egress-guard"
        assert by_workload(payments) == {
            "CronJob/cleanup": ("fail", "profile-label"),
            "Deployment/api": ("pass", "profile-label"),
        }
        assert payments["summary"] == {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0}
        (api_result,) = [r for r in payments["results"] if r["resources"][0]["name"] == "api"]
        live_api = reporting_api.get("deployments", "api", "payments")
        assert live_api is not None
        assert api_result["resources"][0] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "api",
            "namespace": "payments",
            "uid": live_api["metadata"]["uid"],
        }
        assert api_result["policy"] == "egress-guard"
        (staging,) = found["staging"]["results"]
        assert staging["result"] == "fail" and "nonsense" in staging["message"]

    def test_kept_in_place_and_rewritten_only_when_results_change(
        self, reporting_api: LocalApiServer, tmp_path: Path, policy: Policy
    ) -> None:
        seed_namespaces(reporting_api)
        reconciler = Reconciler(connect(reporting_api, tmp_path), reporting(policy))
        reconciler.run_once()
        before = reports(reporting_api)["payments"]
        reporting_api.reset_calls()
        assert reconciler.run_once().reports_written == []
        assert reporting_api.count(writes=True) == 0
        cron = reporting_api.get("cronjobs", "cleanup", "payments")
        assert cron is not None
        template = cron["spec"]["jobTemplate"]["spec"]["template"]
        template["metadata"] = {"labels": {PROFILE: "internal"}}
        rt = reporting_api.resource("cronjobs")
        reporting_api.store.update(rt, "payments", "cleanup", cron, dry_run=False, strict=False)
        assert reconciler.run_once().reports_written == ["payments"]
        after = reports(reporting_api)["payments"]
        assert after["metadata"]["uid"] == before["metadata"]["uid"]  # updated in place
        assert after["summary"]["pass"] == 2 and after["summary"]["fail"] == 0

    def test_deleted_when_the_namespace_opts_out(
        self, reporting_api: LocalApiServer, tmp_path: Path, policy: Policy
    ) -> None:
        seed_namespaces(reporting_api)
        reconciler = Reconciler(connect(reporting_api, tmp_path), reporting(policy))
        reconciler.run_once()
        staging = reporting_api.get("namespaces", "staging")
        assert staging is not None
        staging["metadata"]["labels"] = {}
        rt = reporting_api.resource("namespaces")
        reporting_api.store.update(rt, "", "staging", staging, dry_run=False, strict=False)
        assert reconciler.run_once().reports_deleted == ["staging"]
        assert sorted(reports(reporting_api)) == ["payments"]

    def test_a_report_stripped_of_its_label_is_taken_back(
        self, reporting_api: LocalApiServer, tmp_path: Path, policy: Policy
    ) -> None:
        seed_namespaces(reporting_api)
        reconciler = Reconciler(connect(reporting_api, tmp_path), reporting(policy))
        reconciler.run_once()
        forged = reporting_api.get("policyreports", "egress-guard", "payments")
        assert forged is not None
        forged["metadata"]["labels"] = {}
        forged["summary"] = {"pass": 99, "fail": 0, "warn": 0, "error": 0, "skip": 0}
        rt = reporting_api.resource("policyreports")
        reporting_api.store.update(
            rt, "payments", "egress-guard", forged, dry_run=False, strict=False
        )
        again = reconciler.run_once()
        assert again.complete and "payments" in again.reports_written
        restored = reports(reporting_api)["payments"]
        assert restored["summary"]["fail"] == 1
        assert restored["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "egress-guard"}

    def test_a_report_made_by_someone_else_is_left_alone(
        self, reporting_api: LocalApiServer, tmp_path: Path, policy: Policy
    ) -> None:
        seed_namespaces(reporting_api)
        kyverno = {
            "apiVersion": "wgpolicyk8s.io/v1alpha2",
            "kind": "PolicyReport",
            "metadata": {"name": "kyverno-polr", "namespace": "unmanaged"},
            "results": [],
        }
        reporting_api.seed(kyverno)
        Reconciler(connect(reporting_api, tmp_path), reporting(policy)).run_once()
        assert reporting_api.get("policyreports", "kyverno-polr", "unmanaged") is not None

    def test_openreports_format(
        self, reporting_api: LocalApiServer, tmp_path: Path, policy: Policy
    ) -> None:
        seed_namespaces(reporting_api)
        Reconciler(connect(reporting_api, tmp_path), reporting(policy, "openreports")).run_once()
        assert reports(reporting_api) == {}
        found = reports(reporting_api, "reports")
        assert sorted(found) == ["payments", "staging"]
        assert found["payments"]["apiVersion"] == "openreports.io/v1alpha1"
        assert found["payments"]["kind"] == "Report"

    def test_a_missing_crd_is_said_once_and_the_rest_goes_on(
        self,
        local_api: LocalApiServer,
        kube: client.ApiClient,
        policy: Policy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        seed_namespaces(local_api)  # this server has no PolicyReport CRD
        reconciler = Reconciler(kube, reporting(policy))
        with caplog.at_level(logging.INFO, logger="webhook.reconcile.reconciler"):
            first, second = reconciler.run_once(), reconciler.run_once()
        assert "policyreports.wgpolicyk8s.io is not installed" in first.reports_unavailable
        assert second.reports_unavailable == first.reports_unavailable
        assert first.created and not first.errors  # NetworkPolicies made all the same
        said = [r for r in caplog.records if "is not installed" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.ERROR

    @pytest.mark.skipif(not CRDS.exists(), reason="../shared/corpus is not here")
    @pytest.mark.parametrize(
        ("format", "plural", "crd_file"),
        [
            ("policyreport", "policyreports", "policyreports.yaml"),
            ("openreports", "reports", "openreports.yaml"),
        ],
    )
    def test_reports_are_valid_against_the_real_crds(
        self,
        reporting_api: LocalApiServer,
        tmp_path: Path,
        policy: Policy,
        format: str,
        plural: str,
        crd_file: str,
    ) -> None:
        seed_namespaces(reporting_api)
        Reconciler(connect(reporting_api, tmp_path), reporting(policy, format)).run_once()
        crd = next(d for d in yaml.safe_load_all((CRDS / crd_file).read_text()) if d)
        (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
        schema = version["schema"]["openAPIV3Schema"]
        for report in reports(reporting_api, plural).values():
            assert report["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
            jsonschema.validate(report, schema)


def test_the_reconciler_may_write_reports_only_when_asked(policy: Policy) -> None:
    def reconciler_rules(p: Policy) -> list[dict[str, Any]]:
        (role,) = [
            o
            for o in rbac_manifests(DeployOptions(), p)
            if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "egress-guard-reconciler"
        ]
        return list(role["rules"])

    assert not any("wgpolicyk8s.io" in r["apiGroups"] for r in reconciler_rules(policy))
    rules = reconciler_rules(reporting(policy).current())
    (reports_rule,) = [r for r in rules if "wgpolicyk8s.io" in r["apiGroups"]]
    assert reports_rule["resources"] == ["policyreports"]
    assert sorted(reports_rule["verbs"]) == ["create", "delete", "list", "update"]
