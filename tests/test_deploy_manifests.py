"""deploy/ and `egress-guard manifests`: schema-valid, buildable, equal to each other, and safe.

Safe means: a broken egress-guard can never stop the control plane or itself (system namespaces
and its own are excluded by name, only opted-in namespaces are sent), dry runs have no side
effects, timeouts are short, and the pods run with the least privilege a restricted namespace
allows.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from admission_dispatch import selects
from builders import load_documents
from click.testing import CliRunner
from kustomize_build import build, build_in_python, build_with_kubectl, by_key, kubectl
from openapi_schema import schema_errors

from webhook.cli.main import main
from webhook.config.policy_file import load_policy
from webhook.config.settings import ServeSettings
from webhook.core.kube_names import SYSTEM_NAMESPACES
from webhook.core.namespace import namespace_context
from webhook.core.policy import Mode
from webhook.core.workloads import BUILTIN_KINDS
from webhook.deploy.objects import (
    MUTATE_PATH,
    NAMESPACE_NAME_LABEL,
    VALIDATE_PATH,
)
from webhook.deploy.tree import CERT_MANAGER_COMPONENT
from webhook.deploy.tree import cert_manager_overlay as cert_manager_overlay_document

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
NOT_MANIFESTS = {"policy.example.yaml"}
"""Files under deploy/ that are not Kubernetes objects."""
HELM_CHART = "helm"
"""deploy/helm/: the Helm chart, templates rather than objects (tests/test_helm_chart.py)."""
EXAMPLE_POLICY_TEXT = (REPO / "webhook" / "data" / "policy.example.yaml").read_text()
Doc = dict[str, Any]


def render(*args: str) -> str:
    result = CliRunner().invoke(main, ["manifests", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def render_tree(out: Path, *args: str) -> Path:
    render("--output-dir", str(out), *args)
    return out


def yaml_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*.yaml")
        if p.name not in NOT_MANIFESTS and p.relative_to(root).parts[0] != HELM_CHART
    )


def documents(root: Path) -> list[tuple[str, Doc]]:
    return [
        (str(path.relative_to(root)), doc)
        for path in yaml_files(root)
        for doc in load_documents(path.read_text())
    ]


def cert_manager_overlay(tmp_path: Path) -> Path:
    """The overlay a user writes (README): the base plus the cert-manager component."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = os.path.relpath(DEPLOY, overlay)  # Kustomize takes relative paths only
    document = cert_manager_overlay_document(base, f"{base}/{CERT_MANAGER_COMPONENT}")
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(document))
    return overlay


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_tree(tmp_path_factory.mktemp("rendered"))


@pytest.fixture(scope="module")
def built() -> dict[tuple[str, str, str], Doc]:
    return by_key(build(DEPLOY))


def the(objects: dict[tuple[str, str, str], Doc], kind: str, component: str = "") -> Doc:
    found = [
        doc
        for (k, _, _), doc in objects.items()
        if k == kind
        and (not component or doc["metadata"]["labels"]["app.kubernetes.io/component"] == component)
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def server(objects: dict[tuple[str, str, str], Doc]) -> Doc:
    """The webhook server's Deployment (the other one runs the reconciler)."""
    return the(objects, "Deployment", "webhook")


# --- deploy/ is what `manifests` renders ---------------------------------------------------


def test_deploy_is_what_manifests_renders_for_the_example_policy(rendered: Path) -> None:
    stale = "deploy/ is out of date: run `egress-guard manifests -o deploy/`"
    rendered_files = {str(p.relative_to(rendered)) for p in yaml_files(rendered)}
    deploy_files = {str(p.relative_to(DEPLOY)) for p in yaml_files(DEPLOY)}
    assert deploy_files == rendered_files, stale
    for name in sorted(rendered_files):
        assert (rendered / name).read_text() == (DEPLOY / name).read_text(), f"{name}: {stale}"


def test_the_stream_output_is_the_built_base(built: dict[tuple[str, str, str], Doc]) -> None:
    assert by_key(load_documents(render())) == built


def test_the_cert_manager_stream_is_the_base_with_the_component(tmp_path: Path) -> None:
    overlay = cert_manager_overlay(tmp_path)
    assert by_key(load_documents(render("--cert-manager"))) == by_key(build(overlay))


@pytest.mark.skipif(kubectl() is None, reason="kubectl absent: build() used the Python path")
def test_the_python_build_agrees_with_kubectl(tmp_path: Path) -> None:
    assert by_key(build_in_python(DEPLOY)) == by_key(build_with_kubectl(DEPLOY))
    overlay = cert_manager_overlay(tmp_path)
    assert by_key(build_in_python(overlay)) == by_key(build_with_kubectl(overlay))


# --- schema ---------------------------------------------------------------------------------


def _check_cert_manager(doc: Doc, names: set[tuple[str, str]]) -> None:
    """cert-manager's CRDs are not in the Kubernetes schema: check what egress-guard relies on."""
    spec = doc["spec"]
    if doc["kind"] == "Issuer":
        assert set(spec) in ({"selfSigned"}, {"ca"})
        return
    assert doc["kind"] == "Certificate"
    assert ("Issuer", spec["issuerRef"]["name"]) in names
    assert spec["privateKey"] in (
        {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Never"},
        {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
    )
    assert set(spec) <= {
        "isCA",
        "commonName",
        "secretName",
        "duration",
        "renewBefore",
        "privateKey",
        "issuerRef",
        "dnsNames",
        "usages",
    }


@pytest.mark.parametrize("source", ["deploy", "manifests", "manifests --cert-manager"])
def test_every_manifest_is_valid_against_the_kubernetes_schema(source: str) -> None:
    if source == "deploy":
        docs = documents(DEPLOY)
    else:
        docs = [(source, d) for d in load_documents(render(*source.split()[1:]))]
    assert docs
    names = {(d["kind"], d["metadata"]["name"]) for _, d in docs if "metadata" in d}
    checked = 0
    for where, doc in docs:
        if doc["apiVersion"].startswith("kustomize.config.k8s.io/"):
            continue  # a build instruction, built by the tests above
        if doc["apiVersion"].startswith("cert-manager.io/"):
            _check_cert_manager(doc, names)
            continue
        assert schema_errors(doc) is None, f"{where}: {schema_errors(doc)}"
        checked += 1
    assert checked >= 8


def test_the_schema_check_would_catch_a_misspelt_field(built: dict[Any, Doc]) -> None:
    deployment = copy.deepcopy(server(built))
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    assert schema_errors(deployment) is not None


# --- safety ---------------------------------------------------------------------------------


def webhooks(built: dict[Any, Doc]) -> list[tuple[str, Doc]]:
    return [
        (kind, hook)
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
        for hook in the(built, kind)["webhooks"]
    ]


def excluded_by(selector: Doc) -> set[str]:
    return {
        value
        for expression in selector["matchExpressions"]
        if expression["key"] == NAMESPACE_NAME_LABEL and expression["operator"] == "NotIn"
        for value in expression["values"]
    }


def test_webhooks_never_see_system_namespaces_or_egress_guards_own(built: dict[Any, Doc]) -> None:
    own = server(built)["metadata"]["namespace"]
    exempt = set(load_policy(None).exempt_namespaces)
    for _, hook in webhooks(built):
        assert excluded_by(hook["namespaceSelector"]) >= {*SYSTEM_NAMESPACES, own, *exempt}
    assert "egress-guard.io/mode" not in the(built, "Namespace")["metadata"]["labels"]


def test_workload_webhooks_see_only_opted_in_namespaces(built: dict[Any, Doc]) -> None:
    for _, hook in webhooks(built):
        expressions = hook["namespaceSelector"]["matchExpressions"]
        if hook["name"].startswith("namespaces."):
            # the namespace preview selects the Namespace objects being labelled instead
            assert hook["objectSelector"]["matchExpressions"] == [
                {"key": "egress-guard.io/mode", "operator": "Exists"}
            ]
        elif hook["name"].startswith(("workloads-preview.", "networkpolicies-preview.")):
            assert {
                "key": "egress-guard.io/mode",
                "operator": "In",
                "values": ["warn", "audit"],
            } in expressions
        else:
            assert {"key": "egress-guard.io/mode", "operator": "Exists"} in expressions


NAMESPACE_CASES = [
    pytest.param("payments", {}, id="not-opted-in"),
    pytest.param("payments", {"egress-guard.io/inject": "all"}, id="inject-only"),
    pytest.param("payments", {"egress-guard.io/mode": "enforce"}, id="enforce"),
    pytest.param("payments", {"egress-guard.io/mode": "warn"}, id="warn"),
    pytest.param("payments", {"egress-guard.io/mode": "audit"}, id="audit"),
    pytest.param("payments", {"egress-guard.io/mode": "enforcing"}, id="typo"),
    pytest.param("payments", {"egress-guard.io/mode": "Warn"}, id="wrong-case"),
    pytest.param("payments", {"egress-guard.io/mode": ""}, id="empty-value"),
    pytest.param("kube-system", {"egress-guard.io/mode": "enforce"}, id="system"),
    pytest.param("egress-guard", {"egress-guard.io/mode": "warn"}, id="own-namespace"),
]


@pytest.mark.parametrize(("name", "labels"), NAMESPACE_CASES)
def test_enforcing_namespaces_fail_closed_and_previews_fail_open_as_the_core_reads_the_mode(
    built: dict[Any, Doc], name: str, labels: dict[str, str]
) -> None:
    hooks = {hook["name"]: hook for _, hook in webhooks(built)}
    enforce = hooks["workloads.validate.egress-guard.io"]
    preview = hooks["workloads-preview.validate.egress-guard.io"]
    assert (enforce["failurePolicy"], preview["failurePolicy"]) == ("Fail", "Ignore")
    namespace_labels = {**labels, NAMESPACE_NAME_LABEL: name}
    mode = namespace_context(name, labels, load_policy(None)).mode
    assert selects(enforce["namespaceSelector"], namespace_labels) == (mode is Mode.ENFORCE)
    assert selects(preview["namespaceSelector"], namespace_labels) == (
        mode in (Mode.WARN, Mode.AUDIT)
    )
    assert enforce["rules"] == preview["rules"]
    assert enforce["matchConditions"] == preview["matchConditions"]


def test_webhook_call_settings(built: dict[Any, Doc]) -> None:
    service = the(built, "Service")
    policies = {}
    for kind, hook in webhooks(built):
        assert hook["admissionReviewVersions"] == ["v1"]
        # only reviews that may ensure NetworkPolicies have side effects (never on a dry run)
        expected_effects = "None" if hook["name"].startswith("networkpolicies") else "NoneOnDryRun"
        assert hook["sideEffects"] == expected_effects
        assert 1 <= hook["timeoutSeconds"] <= 5
        assert hook["matchPolicy"] == "Equivalent"
        target = hook["clientConfig"]["service"]
        assert (target["name"], target["namespace"]) == (
            service["metadata"]["name"],
            service["metadata"]["namespace"],
        )
        assert target["port"] in {p["port"] for p in service["spec"]["ports"]}
        expected_path = VALIDATE_PATH if kind.startswith("Validating") else MUTATE_PATH
        assert target["path"] == expected_path
        assert "caBundle" not in hook["clientConfig"]  # injected, never committed
        policies[hook["name"]] = hook["failurePolicy"]
    assert policies == {
        "workloads.validate.egress-guard.io": "Fail",
        "workloads-preview.validate.egress-guard.io": "Ignore",
        "namespaces.validate.egress-guard.io": "Ignore",
        "networkpolicies.validate.egress-guard.io": "Fail",
        "networkpolicies-preview.validate.egress-guard.io": "Ignore",
        "pods.mutate.egress-guard.io": "Ignore",
    }


def resources_of(hook: Doc, operation: str) -> set[str]:
    return {
        resource
        for rule in hook["rules"]
        if operation in rule["operations"]
        for resource in rule["resources"]
    }


def test_rules_cover_every_workload_kind_and_ephemeral_containers(built: dict[Any, Doc]) -> None:
    hooks = {hook["name"]: hook for _, hook in webhooks(built)}
    for name in (
        "workloads.validate.egress-guard.io",
        "workloads-preview.validate.egress-guard.io",
    ):
        kinds = {k.resource for k in BUILTIN_KINDS}
        assert resources_of(hooks[name], "CREATE") == kinds
        # a status update's labels are kept by the API server: sent too
        assert resources_of(hooks[name], "UPDATE") == kinds | {"pods/status"}
        covered = {
            (group, version, resource)
            for rule in hooks[name]["rules"]
            for group in rule["apiGroups"]
            for version in rule["apiVersions"]
            for resource in rule["resources"]
        }
        assert covered == {(k.group, k.version, k.resource) for k in BUILTIN_KINDS} | {
            ("", "v1", "pods/status")
        }
    for name in (
        "networkpolicies.validate.egress-guard.io",
        "networkpolicies-preview.validate.egress-guard.io",
    ):
        for operation in ("CREATE", "UPDATE", "DELETE"):
            # CiliumNetworkPolicies too: on a Cilium cluster a tenant's adds up with them
            assert resources_of(hooks[name], operation) == {
                "networkpolicies",
                "ciliumnetworkpolicies",
            }
    mutating = hooks["pods.mutate.egress-guard.io"]
    assert resources_of(mutating, "CREATE") == {"pods"}
    assert resources_of(mutating, "UPDATE") == {"pods/ephemeralcontainers"}
    assert mutating["reinvocationPolicy"] == "IfNeeded"
    assert resources_of(hooks["namespaces.validate.egress-guard.io"], "UPDATE") == {"namespaces"}


@pytest.mark.parametrize("component", ["webhook", "reconciler"])
def test_pods_run_with_least_privilege(built: dict[Any, Doc], component: str) -> None:
    pod = the(built, "Deployment", component)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] in {
        name for (kind, _, name) in built if kind == "ServiceAccount"
    }
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["runAsNonRoot"] is True
        assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert the(built, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )


def test_availability_replicas_budget_spread_priority_and_probes(built: dict[Any, Doc]) -> None:
    deployment = server(built)
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budget = the(built, "PodDisruptionBudget")["spec"]
    assert budget["selector"] == spec["selector"] and budget["minAvailable"] == 1
    labels = spec["template"]["metadata"]["labels"]
    assert set(spec["selector"]["matchLabels"].items()) <= set(labels.items())
    terms = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["podAffinityTerm"]["labelSelector"] == spec["selector"]
    assert pod["priorityClassName"]
    container = pod["containers"][0]
    port_names = {p["name"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert (get["scheme"], get["path"]) == ("HTTPS", path)
        assert get["port"] in port_names
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    service_target = the(built, "Service")["spec"]["ports"][0]["targetPort"]
    assert service_target in port_names
    stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert pod["terminationGracePeriodSeconds"] > stop + int(env["EGRESS_GUARD_GRACEFUL_TIMEOUT_S"])


def test_the_container_environment_is_what_serve_reads(
    built: dict[Any, Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = server(built)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    fields = set(ServeSettings.model_fields)
    for name in env:
        if name.startswith("EGRESS_GUARD_"):
            assert name.removeprefix("EGRESS_GUARD_").lower() in fields, f"{name} is read by nobody"
    for name, value in env.items():
        if name.startswith("EGRESS_GUARD_") and value is not None:
            monkeypatch.setenv(name, value)
    settings = ServeSettings()
    assert settings.host == "0.0.0.0"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_map = the(built, "ConfigMap")
    assert settings.config is not None
    policy_mount = next(m for m in mounts.values() if str(settings.config.parent) == m["mountPath"])
    assert volumes[policy_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert settings.config.name in config_map["data"]
    cert_mount = next(m for m in mounts.values() if str(settings.cert_dir) == m["mountPath"])
    assert cert_mount["readOnly"] is True and "secret" in volumes[cert_mount["name"]]
    writable = [m["mountPath"] for m in mounts.values() if not m.get("readOnly")]
    assert any(env["PROMETHEUS_MULTIPROC_DIR"].startswith(p + "/") for p in writable)


def test_the_policy_config_map_holds_the_policy_file_verbatim(built: dict[Any, Doc]) -> None:
    assert the(built, "ConfigMap")["data"]["policy.yaml"] == EXAMPLE_POLICY_TEXT


def test_the_paths_the_webhooks_call_are_served() -> None:
    from builders import review_document, workload

    from webhook.admission.controller import AdmissionController
    from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
    from webhook.config.policy_file import PolicyStore
    from webhook.http.app import create_app

    store = PolicyStore(None)
    app = create_app(
        AdmissionController(store, StaticNamespaceSource(store), ReportingNetworkPolicyApplier())
    )
    client = app.test_client()
    for path in (VALIDATE_PATH, MUTATE_PATH):
        reply = client.post(path, json=review_document(workload("Deployment"), uid="p"))
        assert reply.status_code == 200, path
        assert reply.get_json()["response"]["uid"] == "p", path
    for probe in ("/readyz", "/healthz", "/metrics"):
        assert client.get(probe).status_code == 200, probe


# --- rendering from other policies and options ---------------------------------------------


def test_the_label_prefix_and_exemptions_follow_the_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "labelPrefix: egress.example.com\nexemptNamespaces: [kube-system, monitoring]\n"
        "profiles:\n  none: {}\n"
    )
    docs = by_key(load_documents(render("--config", str(policy), "--namespace", "platform")))
    hooks = webhooks(docs)
    assert {hook["name"] for _, hook in hooks} == {
        "workloads.validate.egress.example.com",
        "workloads-preview.validate.egress.example.com",
        "namespaces.validate.egress.example.com",
        "networkpolicies.validate.egress.example.com",
        "networkpolicies-preview.validate.egress.example.com",
        "pods.mutate.egress.example.com",
    }
    for _, hook in hooks:
        selector = hook.get("objectSelector") or hook["namespaceSelector"]
        keys = {e["key"] for e in selector["matchExpressions"]}
        assert "egress.example.com/mode" in keys and "egress-guard.io/mode" not in keys
        assert excluded_by(hook["namespaceSelector"]) == {
            *SYSTEM_NAMESPACES,
            "platform",
            "monitoring",
        }
        assert hook["clientConfig"]["service"]["namespace"] == "platform"
    assert the(docs, "ConfigMap")["data"]["policy.yaml"] == policy.read_text()
    for (kind, namespace, _), doc in docs.items():
        if kind not in ("Namespace", "ValidatingWebhookConfiguration"):
            assert namespace in ("platform", ""), doc
    assert the(docs, "Namespace")["metadata"]["name"] == "platform"


def test_a_namespace_outside_the_exemptions_is_excluded_and_noted() -> None:
    result = CliRunner().invoke(main, ["manifests", "--namespace", "team-egress"])
    assert result.exit_code == 0
    assert "not in the policy's exemptNamespaces" in result.stderr
    for _, hook in webhooks(by_key(load_documents(result.stdout))):
        assert "team-egress" in excluded_by(hook["namespaceSelector"])


def test_image_option_and_cert_manager_names_follow_the_namespace() -> None:
    docs = by_key(
        load_documents(
            render("--namespace", "platform", "--image", "registry.example/eg:1", "--cert-manager")
        )
    )
    for component in ("webhook", "reconciler"):
        pod = the(docs, "Deployment", component)["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == "registry.example/eg:1"
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        annotations = the(docs, kind)["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == "platform/egress-guard-serving"
    serving = docs[("Certificate", "platform", "egress-guard-serving")]["spec"]
    assert serving["secretName"] == "egress-guard-tls"
    assert "egress-guard.platform.svc" in serving["dnsNames"]


def test_a_bad_policy_file_is_a_usage_error_naming_the_field(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("labelPrefix: Not_A_Domain\n")
    result = CliRunner().invoke(main, ["manifests", "--config", str(policy)])
    assert result.exit_code == 2
    assert "labelPrefix" in result.stderr


# --- egress-guard under a default-deny of its own --------------------------------------------


def test_egress_guard_reaches_only_dns_and_the_api_server(built: dict[Any, Doc]) -> None:
    (policy,) = [doc for (kind, _, _), doc in built.items() if kind == "NetworkPolicy"]
    spec = policy["spec"]
    assert spec["podSelector"] == {} and spec["policyTypes"] == ["Ingress", "Egress"]
    assert policy["metadata"]["namespace"] == "egress-guard"
    (ingress,) = spec["ingress"]
    assert "from" not in ingress, "the API server and the kubelet are no pods"
    assert {p["port"] for p in ingress["ports"]} == {8443, 8081}
    dns, api_server = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert {p["port"] for p in api_server["ports"]} == {443, 6443}


def test_the_api_servers_addresses_narrow_its_egress() -> None:
    docs = load_documents(
        render("--api-server-cidr", "10.0.0.10", "--api-server-cidr", "10.1.0.0/24")
    )
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    api_server = policy["spec"]["egress"][-1]
    assert api_server["to"] == [
        {"ipBlock": {"cidr": "10.0.0.10/32"}},
        {"ipBlock": {"cidr": "10.1.0.0/24"}},
    ]


def test_a_bad_api_server_address_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["manifests", "--api-server-cidr", "10.0.0.300"])
    assert result.exit_code == 2
    assert "is not an address range" in result.output
