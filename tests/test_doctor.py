"""`egress-guard doctor` against the local API server: each check from both sides, read-only."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import cni_installs
import pytest
import yaml
from builders import PROFILE, namespace, ns_labels, placed, workload
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from local_apiserver import Call, LocalApiServer

from webhook.cli.main import main
from webhook.cluster.enforcement_probe import EnforcementProbe
from webhook.config.policy_file import load_policy
from webhook.deploy.objects import (
    DeployOptions,
    mutating_webhook_configuration,
    validating_webhook_configuration,
)
from webhook.doctor.diagnose import CHECK_IDS
from webhook.serving.certs import generate_ca, issue_serving_cert

SERVICE_NAME = "egress-guard.egress-guard.svc"
CORPUS_FLANNEL = (
    Path(__file__).resolve().parents[2] / "shared/corpus/workloads/cni/kube-flannel.yml"
)


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class Cluster:
    """A healthy installation, piece by piece: each test breaks one piece."""

    def __init__(self, api: LocalApiServer) -> None:
        self.api = api
        self.ca, ca_key = generate_ca()
        self.leaf, _ = issue_serving_cert(self.ca, ca_key, [SERVICE_NAME])
        self.ca_key = ca_key

    def seed(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            status = obj.get("status")
            self.api.seed(obj)
            if status is not None:
                metadata = obj["metadata"]
                plural = f"{obj['kind'].lower()}s"
                self.api.set_status(plural, metadata["name"], metadata.get("namespace", ""), status)

    def webhooks(self, ca: x509.Certificate | None = None, **changes: Any) -> None:
        policy = load_policy(None)
        options = DeployOptions()
        bundle = base64.b64encode(pem(ca or self.ca)).decode()
        for configuration in (
            validating_webhook_configuration(policy, options),
            mutating_webhook_configuration(policy, options),
        ):
            for hook in configuration["webhooks"]:
                hook["clientConfig"]["caBundle"] = bundle
                hook.update(changes)
            self.api.seed(configuration)

    def tls_secret(self, leaf: x509.Certificate | None = None) -> None:
        self.api.seed(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "egress-guard-tls", "namespace": "egress-guard"},
                "type": "kubernetes.io/tls",
                "data": {
                    "tls.crt": base64.b64encode(pem(leaf or self.leaf)).decode(),
                    "tls.key": base64.b64encode(b"not read by doctor").decode(),
                },
            }
        )

    def service(self, namespace: str, name: str, ready: list[bool]) -> None:
        self.api.seed(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"selector": {"app": name}, "ports": [{"port": 443, "targetPort": 8443}]},
            },
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-abcde",
                    "namespace": namespace,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": [f"10.0.0.{index + 10}"], "conditions": {"ready": state}}
                    for index, state in enumerate(ready)
                ],
                "ports": [{"port": 8443, "protocol": "TCP"}],
            },
        )

    def dns_pods(self, labels: dict[str, str], *, ready: bool = True, port: int = 53) -> None:
        for index in range(2):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"coredns-{index}",
                    "namespace": "kube-system",
                    "labels": labels,
                },
                "spec": {
                    "containers": [
                        {
                            "name": "coredns",
                            "image": "registry.k8s.io/coredns/coredns:v1.11.3",
                            "ports": [{"containerPort": port, "protocol": "UDP"}],
                        }
                    ]
                },
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                },
            }
            self.seed(pod)

    def healthy(self) -> Cluster:
        self.seed(
            namespace("kube-system", {}),
            namespace("egress-system", {}),
            namespace("payments", ns_labels("enforce")),
            *cni_installs.CALICO,
            placed(workload("Deployment", {PROFILE: "stripe"}, name="api"), "payments"),
        )
        self.webhooks()
        self.tls_secret()
        self.service("egress-guard", "egress-guard", [True, True])
        self.service("egress-system", "egress-proxy", [True])
        self.dns_pods({"k8s-app": "kube-dns"})
        return self


@pytest.fixture
def cluster(local_api: LocalApiServer) -> Cluster:
    return Cluster(local_api)


def doctor(kubeconfig: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["doctor", "--kubeconfig", str(kubeconfig), *args])


def results(outcome: Result) -> dict[str, dict[str, Any]]:
    document = json.loads(outcome.output)
    return {result["check"]: result for result in document["checks"]}


def one(kubeconfig: Path, check: str) -> dict[str, Any]:
    outcome = doctor(kubeconfig, "--check", check, "-o", "json")
    assert outcome.exit_code in (0, 1), outcome.output
    return results(outcome)[check]


def reconcile(kubeconfig: Path) -> None:
    outcome = CliRunner().invoke(
        main, ["reconcile", "--once", "--no-leader-elect", "--kubeconfig", str(kubeconfig)]
    )
    assert outcome.exit_code == 0, outcome.output


class TestHealthyCluster:
    def test_everything_ok_and_exit_zero(self, cluster: Cluster, kubeconfig: Path) -> None:
        cluster.healthy()
        reconcile(kubeconfig)
        outcome = doctor(kubeconfig, "-o", "json")
        assert outcome.exit_code == 0, outcome.output
        found = results(outcome)
        assert list(found) == list(CHECK_IDS)
        assert {check: r["status"] for check, r in found.items()} == dict.fromkeys(CHECK_IDS, "ok")

    def test_it_only_reads(self, cluster: Cluster, kubeconfig: Path) -> None:
        cluster.healthy()
        cluster.api.reset_calls()
        doctor(kubeconfig)
        calls: list[Call] = cluster.api.calls
        assert calls
        assert {call.verb for call in calls} <= {"get", "list"}

    def test_the_table_names_each_check_and_what_to_do(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        cluster.healthy()  # not reconciled: the generated policies are missing
        outcome = doctor(kubeconfig)
        assert outcome.exit_code == 1
        lines = outcome.output.splitlines()
        assert lines[0].split() == ["CHECK", "STATUS", "SUMMARY"]
        assert any(line.startswith("generated-objects") and " problem " in line for line in lines)
        assert "  fix: Run `egress-guard reconcile --once`" in outcome.output
        assert "  - missing: payments/egress-guard-default-deny" in outcome.output
        assert lines[-1].startswith(f"{len(CHECK_IDS)} checks: 1 problem")

    def test_yaml_has_the_same_document(self, cluster: Cluster, kubeconfig: Path) -> None:
        cluster.healthy()
        as_json = json.loads(doctor(kubeconfig, "-o", "json").output)
        assert yaml.safe_load(doctor(kubeconfig, "-o", "yaml").output) == as_json
        assert as_json["summary"]["problem"] == 1


class TestNetworkPolicyEnforcement:
    CHECK = "network-policy-enforcement"

    @pytest.mark.parametrize(
        ("install", "status", "said"),
        [
            (cni_installs.CALICO, "ok", "Calico enforces"),
            (cni_installs.CANAL, "ok", "Canal"),
            (cni_installs.cilium(), "ok", "Cilium enforces"),
            (cni_installs.cilium("always"), "ok", "Cilium enforces"),
            (cni_installs.cilium("never"), "problem", "nothing enforces NetworkPolicies (Cilium)"),
            (cni_installs.FLANNEL, "problem", "nothing enforces NetworkPolicies (flannel)"),
            (cni_installs.aws_node(True), "ok", "AWS VPC CNI enforces"),
            (cni_installs.aws_node(False), "problem", "(AWS VPC CNI)"),
            (cni_installs.ANTREA, "ok", "Antrea enforces"),
            (cni_installs.kube_router(True), "ok", "kube-router enforces"),
            (cni_installs.kube_router(False), "problem", "(kube-router)"),
            (cni_installs.weave(True), "ok", "Weave Net enforces"),
            (cni_installs.weave(False), "problem", "(Weave Net)"),
            (cni_installs.UNRELATED, "unknown", "no known CNI found"),
            ([], "unknown", "no known CNI found"),
        ],
    )
    def test_each_cni_as_its_installer_leaves_it(
        self,
        cluster: Cluster,
        kubeconfig: Path,
        install: list[dict[str, Any]],
        status: str,
        said: str,
    ) -> None:
        cluster.seed(namespace("kube-system", {}), namespace("payments", ns_labels("enforce")))
        cluster.seed(*install)
        result = one(kubeconfig, self.CHECK)
        assert result["status"] == status, result
        assert said in result["summary"]
        if status != "ok":
            assert "--probe" in result["fix"]

    def test_flannel_alone_is_a_warning_while_no_namespace_relies_on_it(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        cluster.seed(namespace("legacy", ns_labels("enforce", "proxy")), *cni_installs.FLANNEL)
        result = one(kubeconfig, self.CHECK)
        assert result["status"] == "warning"
        assert "no namespace relies on NetworkPolicies yet" in result["summary"]

    def test_a_cni_not_ready_on_every_node_is_a_warning(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        cluster.seed(
            namespace("kube-system", {}),
            cni_installs.daemon_set(
                "kube-system",
                "calico-node",
                cni_installs.container("calico-node", "docker.io/calico/node:v3.28.1"),
                ready=2,
                desired=3,
            ),
        )
        result = one(kubeconfig, self.CHECK)
        assert result["status"] == "warning"
        assert "not every node" in result["summary"]

    def test_a_tenants_namesake_daemonset_proves_nothing(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        """Anyone with the edit role can make a DaemonSet called calico-node in their namespace;
        it must not turn flannel alone into ok."""
        fake = cni_installs.daemon_set(
            "tenant-a",
            "calico-node",
            cni_installs.container("calico-node", "busybox:1.36"),
        )
        cluster.seed(namespace("tenant-a", {}), namespace("payments", ns_labels("enforce")))
        cluster.seed(*cni_installs.FLANNEL, fake)
        result = one(kubeconfig, self.CHECK)
        assert result["status"] == "problem"
        assert "flannel" in result["summary"] and "Calico" not in result["summary"]

    def test_a_cni_daemonset_on_no_node_enforces_nothing(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        idle = cni_installs.daemon_set(
            "kube-system",
            "calico-node",
            cni_installs.container("calico-node", "docker.io/calico/node:v3.28.1"),
            ready=0,
            desired=0,
        )
        cluster.seed(namespace("kube-system", {}), namespace("payments", ns_labels("enforce")))
        cluster.seed(*cni_installs.FLANNEL, idle)
        assert one(kubeconfig, self.CHECK)["status"] == "problem"

    def test_unreadable_daemonsets_are_unknown_never_ok(
        self, local_api: LocalApiServer, cluster: Cluster, kubeconfig: Path
    ) -> None:
        cluster.seed(namespace("kube-system", {}), *cni_installs.CALICO)
        local_api.authorizer = lambda call: call.resource != "daemonsets"
        result = one(kubeconfig, self.CHECK)
        assert result["status"] == "unknown"
        assert "forbidden" in result["summary"]

    @pytest.mark.skipif(not CORPUS_FLANNEL.exists(), reason="../shared/corpus is not here")
    def test_flannels_own_manifest_is_told_apart(self, cluster: Cluster, kubeconfig: Path) -> None:
        documents = [d for d in yaml.safe_load_all(CORPUS_FLANNEL.read_text()) if d]
        cluster.seed(namespace("payments", ns_labels("enforce")))
        running = {"desiredNumberScheduled": 3, "numberReady": 3, "currentNumberScheduled": 3}
        running["numberMisscheduled"] = 0
        for document in documents:
            if document["kind"] == "DaemonSet":
                document["status"] = running  # as its controller reports it on three nodes
        cluster.seed(*(d for d in documents if d["kind"] in ("Namespace", "DaemonSet")))
        result = one(kubeconfig, self.CHECK)
        assert result["status"] == "problem"
        assert "flannel" in result["summary"]


class TestWebhooks:
    def test_not_installed(self, cluster: Cluster, kubeconfig: Path) -> None:
        result = one(kubeconfig, "webhook-configuration")
        assert result["status"] == "problem"
        assert "ValidatingWebhookConfiguration egress-guard is not installed" in result["details"]

    def test_rendered_from_another_label_prefix(self, cluster: Cluster, kubeconfig: Path) -> None:
        stale = {"matchExpressions": [{"key": "old.example/mode", "operator": "Exists"}]}
        cluster.webhooks(namespaceSelector=stale)
        result = one(kubeconfig, "webhook-configuration")
        assert result["status"] == "problem"
        assert any("differs in namespaceSelector" in line for line in result["details"])
        assert "egress-guard manifests" in result["fix"]

    def test_the_api_servers_defaults_are_no_difference(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        cluster.webhooks()
        validating = cluster.api.get("validatingwebhookconfigurations", "egress-guard")
        assert validating is not None
        for hook in validating["webhooks"]:
            hook.setdefault("matchPolicy", "Equivalent")
            hook.setdefault("objectSelector", {})
            for rule in hook["rules"]:
                rule.setdefault("scope", "*")
        rt = cluster.api.resource("validatingwebhookconfigurations")
        cluster.api.store.update(rt, "", "egress-guard", validating, dry_run=False, strict=False)
        assert one(kubeconfig, "webhook-configuration")["status"] == "ok"

    def test_a_webhook_missing_and_one_too_many(self, cluster: Cluster, kubeconfig: Path) -> None:
        cluster.webhooks()
        validating = cluster.api.get("validatingwebhookconfigurations", "egress-guard")
        assert validating is not None
        removed = validating["webhooks"].pop(0)
        validating["webhooks"].append({**removed, "name": "extra.egress-guard.io"})
        rt = cluster.api.resource("validatingwebhookconfigurations")
        cluster.api.store.update(rt, "", "egress-guard", validating, dry_run=False, strict=False)
        details = one(kubeconfig, "webhook-configuration")["details"]
        assert f"ValidatingWebhookConfiguration: webhook {removed['name']} is missing" in details
        assert any(
            "extra.egress-guard.io is not in what the policy file renders" in d for d in details
        )

    def test_a_server_that_drops_match_conditions(self, cluster: Cluster, kubeconfig: Path) -> None:
        cluster.webhooks()
        cluster.api.server_version = (1, 27)
        result = one(kubeconfig, "webhook-configuration")
        assert result["status"] == "problem"
        assert "drops the webhooks' matchConditions" in result["summary"]

    def test_a_ca_bundle_that_does_not_sign_the_certificate(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        other_ca, _ = generate_ca("another CA")
        cluster.webhooks(ca=other_ca)
        cluster.tls_secret()
        result = one(kubeconfig, "webhook-certificate")
        assert result["status"] == "problem"
        assert "does not sign the serving certificate" in result["summary"]

    @pytest.mark.parametrize(("days", "status"), [(400, "ok"), (20, "warning"), (3, "problem")])
    def test_expiry(self, cluster: Cluster, kubeconfig: Path, days: int, status: str) -> None:
        leaf, _ = issue_serving_cert(cluster.ca, cluster.ca_key, [SERVICE_NAME])
        key = cluster.ca_key
        now = dt.datetime.now(dt.UTC)
        short = (
            x509.CertificateBuilder()
            .subject_name(leaf.subject)
            .issuer_name(cluster.ca.subject)
            .public_key(leaf.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days, hours=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(SERVICE_NAME)]), critical=False
            )
            .sign(key, leaf.signature_hash_algorithm)  # type: ignore[arg-type]
        )
        cluster.webhooks()
        cluster.tls_secret(short)
        result = one(kubeconfig, "webhook-certificate")
        assert result["status"] == status, result
        if status != "ok":
            assert f"expires in {days} days" in result["summary"]

    def test_a_certificate_for_another_name(self, cluster: Cluster, kubeconfig: Path) -> None:
        leaf, _ = issue_serving_cert(cluster.ca, cluster.ca_key, ["webhook.example.com"])
        cluster.webhooks()
        cluster.tls_secret(leaf)
        result = one(kubeconfig, "webhook-certificate")
        assert result["status"] == "problem"
        assert f"does not name {SERVICE_NAME}" in result["summary"]

    def test_a_secret_doctor_may_not_read_is_unknown(
        self, local_api: LocalApiServer, cluster: Cluster, kubeconfig: Path
    ) -> None:
        cluster.webhooks()
        cluster.tls_secret()
        local_api.authorizer = lambda call: call.resource != "secrets"
        result = one(kubeconfig, "webhook-certificate")
        assert result["status"] == "unknown"
        assert "egress-guard/egress-guard-tls" in result["summary"]

    @pytest.mark.parametrize(
        ("ready", "status", "said"),
        [
            ([True, True], "ok", "2 ready endpoints"),
            ([True, False], "warning", "one ready endpoint"),
            ([False, False], "problem", "no ready endpoint"),
        ],
    )
    def test_endpoints(
        self, cluster: Cluster, kubeconfig: Path, ready: list[bool], status: str, said: str
    ) -> None:
        cluster.service("egress-guard", "egress-guard", ready)
        result = one(kubeconfig, "webhook-endpoints")
        assert (result["status"], said in result["summary"]) == (status, True), result

    def test_no_service(self, cluster: Cluster, kubeconfig: Path) -> None:
        result = one(kubeconfig, "webhook-endpoints")
        assert result["status"] == "problem"
        assert "does not exist" in result["summary"]


class TestDnsAndProxy:
    def test_a_selector_that_matches_no_dns_pod(self, cluster: Cluster, kubeconfig: Path) -> None:
        cluster.seed(namespace("kube-system", {}), namespace("payments", ns_labels("enforce")))
        cluster.dns_pods({"k8s-app": "coredns"})  # the selector says kube-dns
        result = one(kubeconfig, "dns")
        assert result["status"] == "problem"
        assert "matches no running, ready pod" in result["summary"]

    def test_dns_pods_not_ready(self, cluster: Cluster, kubeconfig: Path) -> None:
        cluster.seed(namespace("kube-system", {}))
        cluster.dns_pods({"k8s-app": "kube-dns"}, ready=False)
        assert one(kubeconfig, "dns")["status"] == "warning"  # nothing relies on it yet

    def test_dns_on_another_port(self, cluster: Cluster, kubeconfig: Path) -> None:
        cluster.seed(namespace("kube-system", {}))
        cluster.dns_pods({"k8s-app": "kube-dns"}, port=5353)
        result = one(kubeconfig, "dns")
        assert result["status"] == "problem"
        assert "listen on 5353" in result["summary"]

    def test_node_local_dns_without_cidrs(
        self, cluster: Cluster, kubeconfig: Path, tmp_path: Path
    ) -> None:
        cluster.seed(namespace("kube-system", {}), namespace("payments", ns_labels("enforce")))
        cluster.seed(*cni_installs.NODE_LOCAL_DNS)
        cluster.dns_pods({"k8s-app": "kube-dns"})
        result = one(kubeconfig, "dns")
        assert result["status"] == "problem"
        assert "NodeLocal DNSCache" in result["summary"] and "dns.cidrs" in result["fix"]
        policy_file = tmp_path / "policy.yaml"
        policy_file.write_text("dns:\n  cidrs: [169.254.20.10/32]\nprofiles:\n  none: {}\n")
        outcome = doctor(kubeconfig, "--config", str(policy_file), "--check", "dns", "-o", "json")
        assert results(outcome)["dns"]["status"] == "ok"

    def test_a_proxy_service_that_does_not_exist(self, cluster: Cluster, kubeconfig: Path) -> None:
        result = one(kubeconfig, "proxy")
        assert result["status"] == "problem"
        assert "egress-system/egress-proxy, which does not exist" in result["summary"]

    def test_a_proxy_without_ready_endpoints(self, cluster: Cluster, kubeconfig: Path) -> None:
        cluster.seed(namespace("egress-system", {}))
        cluster.service("egress-system", "egress-proxy", [False])
        assert "no ready endpoint" in one(kubeconfig, "proxy")["summary"]


class TestNamespaces:
    def test_mistyped_labels(self, cluster: Cluster, kubeconfig: Path) -> None:
        cluster.seed(namespace("shop", {"egress-guard.io/mode": "enforcing"}))
        result = one(kubeconfig, "namespaces")
        assert result["status"] == "warning"
        assert "1 mistyped labels" in result["summary"]
        assert any(line.startswith("shop: ") and "enforcing" in line for line in result["details"])

    def test_workloads_their_next_update_would_refuse(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        cluster.seed(
            namespace("payments", ns_labels("enforce")),
            namespace("sandbox", ns_labels("audit")),
            placed(workload("Deployment", {}, name="legacy-api"), "payments"),
            placed(workload("Deployment", {PROFILE: "stripe"}, name="api"), "payments"),
            placed(workload("Deployment", {}, name="loose"), "sandbox"),
        )
        result = one(kubeconfig, "namespaces")
        assert result["status"] == "warning"
        assert "1 running workloads in enforcing namespaces would be refused" in result["summary"]
        (detail,) = result["details"]
        assert detail.startswith("payments/Deployment/legacy-api: ")

    def test_an_owner_of_a_kind_not_reviewed_hides_nothing(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        """An ownerReference is the object's own word: one pointing at a ConfigMap must not take
        a workload out of the list."""
        hidden = placed(workload("Deployment", {}, name="sneaky"), "payments")
        hidden["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "cover",
                "uid": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
                "controller": True,
            }
        ]
        cluster.seed(namespace("payments", ns_labels("enforce")), hidden)
        result = one(kubeconfig, "namespaces")
        assert result["status"] == "warning"
        assert result["details"][0].startswith("payments/Deployment/sneaky: ")

    def test_pods_owned_by_a_controller_are_left_to_their_owner(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        owned = placed(workload("Pod", {}, name="legacy-api-1"), "payments")
        owned["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "legacy-api",
                "uid": "0b0e7a52-52d8-4a3e-9b2c-4f2b1c0de001",
                "controller": True,
            }
        ]
        cluster.seed(namespace("payments", ns_labels("enforce")), owned)
        assert one(kubeconfig, "namespaces")["status"] == "ok"

    def test_drifted_policies_in_an_enforcing_namespace(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        cluster.seed(
            namespace("payments", ns_labels("enforce")),
            placed(workload("Deployment", {PROFILE: "stripe"}, name="api"), "payments"),
        )
        reconcile(kubeconfig)
        assert one(kubeconfig, "generated-objects")["status"] == "ok"
        live = cluster.api.get("networkpolicies", "egress-guard-profile-stripe", "payments")
        assert live is not None
        live["spec"]["egress"] = [{}]  # opened up by hand
        rt = cluster.api.resource("networkpolicies")
        cluster.api.store.update(
            rt, "payments", live["metadata"]["name"], live, dry_run=False, strict=False
        )
        result = one(kubeconfig, "generated-objects")
        assert result["status"] == "problem"
        assert result["details"] == ["drifted: payments/egress-guard-profile-stripe"]


class TestCommand:
    def test_a_subset_reads_only_what_it_needs(self, cluster: Cluster, kubeconfig: Path) -> None:
        cluster.healthy()
        cluster.api.reset_calls()
        doctor(kubeconfig, "--check", "webhook-endpoints")
        resources = {call.resource for call in cluster.api.calls}
        assert resources == {
            "services",
            "endpointslices",
            "validatingwebhookconfigurations",
            "mutatingwebhookconfigurations",
            "secrets",
        }

    def test_an_unknown_check_is_a_usage_error(self, kubeconfig: Path) -> None:
        outcome = doctor(kubeconfig, "--check", "everything")
        assert outcome.exit_code == 2
        assert "'everything' is not one of" in outcome.output

    def test_an_unreachable_cluster_exits_2(
        self, local_api: LocalApiServer, kubeconfig: Path
    ) -> None:
        local_api.go_down()
        outcome = doctor(kubeconfig)
        assert outcome.exit_code == 2
        assert "cannot reach the cluster's API server" in outcome.output
        local_api.come_up()


class FakeKubelet:
    """Runs the probe's pods as a node would: the target gets an address, a client pod succeeds
    unless (with `enforcing`, as an enforcing CNI does) a policy with policyTypes Egress and no
    egress rules selects it. `runs=False`: pods stay Pending, as on a cluster that cannot pull
    the image."""

    def __init__(self, api: LocalApiServer, *, enforcing: bool, runs: bool = True) -> None:
        self.api, self.enforcing, self.runs = api, enforcing, runs
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.pods_seen: list[dict[str, Any]] = []

    def __enter__(self) -> FakeKubelet:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def _denied(self, pod: dict[str, Any]) -> bool:
        labels = pod["metadata"].get("labels") or {}
        for policy in self.api.objects("networkpolicies", pod["metadata"]["namespace"]):
            spec = policy["spec"]
            wanted = (spec.get("podSelector") or {}).get("matchLabels") or {}
            selects = all(labels.get(key) == value for key, value in wanted.items())
            if selects and "Egress" in spec.get("policyTypes", ()) and not spec.get("egress"):
                return True
        return False

    def _loop(self) -> None:
        while not self.stop.wait(0.02):
            for pod in self.api.objects("pods"):
                metadata = pod["metadata"]
                if not metadata["namespace"].startswith("egress-guard-probe-"):
                    continue
                if (pod.get("status") or {}).get("phase", "Pending") != "Pending" or not self.runs:
                    continue
                self.pods_seen.append(pod)
                if metadata["name"] == "target":
                    status = {"phase": "Running", "podIP": "10.1.2.3"}
                else:
                    blocked = self.enforcing and self._denied(pod)
                    status = {"phase": "Failed" if blocked else "Succeeded"}
                self.api.set_status("pods", metadata["name"], metadata["namespace"], status)


class TestProbe:
    def run(self, kubeconfig: Path, *extra: str) -> Result:
        return doctor(
            kubeconfig, "--check", "network-policy-enforcement", "--probe", "-o", "json", *extra
        )

    def test_an_enforcing_cluster_blocks_the_probe_and_cleans_up(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        cluster.seed(namespace("kube-system", {}), *cni_installs.CALICO)
        with FakeKubelet(cluster.api, enforcing=True) as kubelet:
            outcome = self.run(kubeconfig)
        assert outcome.exit_code == 0, outcome.output
        probe = results(_json_part(outcome))["network-policy-probe"]
        assert probe["status"] == "ok"
        assert "NetworkPolicies are enforced" in probe["summary"]
        assert not [
            n for n in cluster.api.objects("namespaces") if "probe" in n["metadata"]["name"]
        ]
        assert {pod["metadata"]["name"] for pod in kubelet.pods_seen} == {
            "target",
            "control",
            "probe",
        }
        for (
            pod
        ) in kubelet.pods_seen:  # admitted where the restricted Pod Security level is enforced
            (container,) = pod["spec"]["containers"]
            context = container["securityContext"]
            assert context["runAsNonRoot"] and not context["allowPrivilegeEscalation"]
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}

    def test_a_cluster_that_does_not_enforce_is_a_problem(
        self, cluster: Cluster, kubeconfig: Path
    ) -> None:
        cluster.seed(namespace("kube-system", {}), *cni_installs.CALICO)  # says it enforces
        with FakeKubelet(cluster.api, enforcing=False):
            outcome = self.run(kubeconfig)
        assert outcome.exit_code == 1
        probe = results(_json_part(outcome))["network-policy-probe"]
        assert probe["status"] == "problem"
        assert "not enforced" in probe["summary"]

    def test_the_probe_says_it_writes(self, cluster: Cluster, kubeconfig: Path) -> None:
        with FakeKubelet(cluster.api, enforcing=True):
            outcome = self.run(kubeconfig)
        assert "probe: this writes" in outcome.output

    def test_pods_that_never_run_are_unknown_and_cleaned_up(
        self, cluster: Cluster, kube: Any
    ) -> None:
        probe = EnforcementProbe(kube, timeout_s=0.5, poll_s=0.05)
        with FakeKubelet(cluster.api, enforcing=True, runs=False):
            outcome = probe.run()
        assert outcome.enforced is None
        assert "did not get there within 0.5 s" in outcome.detail
        assert outcome.cleaned_up
        assert cluster.api.get("namespaces", outcome.namespace) is None

    def test_an_interrupted_probe_still_cleans_up(self, cluster: Cluster, kube: Any) -> None:
        def interrupt(message: str) -> None:
            if "probe pod" in message:
                raise KeyboardInterrupt

        probe = EnforcementProbe(kube, poll_s=0.05, on_progress=interrupt)
        with FakeKubelet(cluster.api, enforcing=True), pytest.raises(KeyboardInterrupt):
            probe.run()
        leftover = [
            n for n in cluster.api.objects("namespaces") if "probe" in n["metadata"]["name"]
        ]
        assert leftover == []

    def test_a_control_pod_that_cannot_reach_the_target_tells_nothing(
        self, cluster: Cluster, kube: Any
    ) -> None:
        class Broken(FakeKubelet):
            def _denied(self, pod: dict[str, Any]) -> bool:
                return True  # everything is blocked, policy or not

        with Broken(cluster.api, enforcing=True):
            outcome = EnforcementProbe(kube, poll_s=0.05).run()
        assert outcome.enforced is None
        assert "control pod" in outcome.detail
        assert cluster.api.get("namespaces", outcome.namespace) is None


def _json_part(outcome: Result) -> Result:
    """The JSON document without the probe's progress lines (CliRunner mixes stderr in)."""
    start = outcome.output.index("{")
    return type("Output", (), {"output": outcome.output[start:]})()  # type: ignore[return-value]
