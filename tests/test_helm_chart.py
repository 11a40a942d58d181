"""deploy/helm/egress-guard renders what `egress-guard manifests` renders for the same settings.

Each case renders the chart (helm_render.py: Helm's own engine, offline) and `manifests -o yaml`
with the same settings and compares them object by object: the same kinds, namespaces and names,
then the same content. The chart differs from `manifests` in these ways only, each normalised
below by name:

- Helm's labels (`helm.sh/chart`, `app.kubernetes.io/managed-by: Helm`,
  `app.kubernetes.io/instance`) on each object's metadata, never in a selector or pod template:
  removed after checking their values.
- The Namespace: `manifests` renders egress-guard's namespace; Helm stores the release in its
  namespace before it creates anything, so the chart cannot create it (`helm install
  --create-namespace`, then the Pod Security labels, as NOTES.txt says): left out of the
  expected objects.
- The hook objects (self-signed certificates only): Jobs that run `egress-guard certs generate`
  and `certs inject-ca` with their service account, roles and script, where `manifests` leaves
  those steps to the person deploying (certs/README.md). They make the Secrets egress-guard-ca and
  egress-guard-tls and the caBundle at install time, so neither is a rendered object on either
  side. Compared apart from the rest, and checked on their own below.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from helm_render import CHART, RELEASE, RenderError, is_hook, render
from kustomize_build import by_key
from openapi_schema import schema_errors

from webhook import __version__
from webhook.cli.main import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_POLICY_TEXT = (REPO / "webhook" / "data" / "policy.example.yaml").read_text()
Doc = dict[str, Any]
Key = tuple[str, str, str]

HELM_LABELS = {
    "helm.sh/chart": f"egress-guard-{__version__}",
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/instance": RELEASE,
}
NOT_IN_KUBERNETES_SCHEMA = ("cert-manager.io/", "monitoring.coreos.com/")
"""CRDs: cert-manager's objects equal manifests' (checked against their fields in
test_deploy_manifests.py); the ServiceMonitor is checked field by field below."""

CUSTOM_POLICY = """\
# a policy whose every deploy-relevant field differs from the example's
labelPrefix: egress.example.org
exemptNamespaces: [monitoring]
dns:
  namespace: dns-system
  podSelector: {}
  ports: [53, 5353]
  cidrs: [169.254.20.10, 10.0.0.10/32]
workloadKinds:
  - {group: argoproj.io, version: v1alpha1, kind: Rollout, resource: rollouts}
  - {group: apps.kruise.io, version: v1beta1, kind: StatefulSet, resource: statefulsets}
governance:
  loosenNamespaces: {groups: [platform]}
reports:
  policyReports: true
  format: openreports
profiles:
  none: {}
"""


def manifests(*args: str) -> list[Doc]:
    result = CliRunner().invoke(main, ["manifests", "-o", "yaml", *args])
    assert result.exit_code == 0, result.output
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def without_helm_labels(doc: Doc) -> Doc:
    """The object with Helm's labels removed, once their values are checked."""
    doc = copy.deepcopy(doc)
    labels = doc["metadata"]["labels"]
    for key, value in HELM_LABELS.items():
        assert labels.pop(key, None) == value, f"{doc['kind']} {doc['metadata']['name']}: {key}"
    return doc


def chart_objects(values: Mapping[str, Any], namespace: str) -> dict[Key, Doc]:
    """The chart's release objects (no hooks), as `manifests` would write them."""
    return by_key([without_helm_labels(d) for d in render(values, namespace) if not is_hook(d)])


def expected_objects(*args: str) -> dict[Key, Doc]:
    """`manifests` output less its Namespace, which Helm creates (`--create-namespace`)."""
    return {key: doc for key, doc in by_key(manifests(*args)).items() if key[0] != "Namespace"}


def assert_same_objects(chart: Mapping[Key, Doc], expected: Mapping[Key, Doc]) -> None:
    assert sorted(chart) == sorted(expected), "the chart and manifests render different objects"
    for key in sorted(expected):
        assert chart[key] == expected[key], f"{key}: the chart differs from manifests"


@pytest.fixture(scope="module")
def custom_policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(CUSTOM_POLICY)
    return path


CASES = {
    "defaults": ({}, "egress-guard", ()),
    "namespace-image-api-server": (
        {
            "image": {"repository": "registry.example/egress-guard", "tag": "1.2.3"},
            "networkPolicy": {"apiServerCIDRs": ["10.0.0.1", "fd00::/64"]},
        },
        "platform-egress",
        (
            "--image=registry.example/egress-guard:1.2.3",
            "--api-server-cidr=10.0.0.1",
            "--api-server-cidr=fd00::/64",
        ),
    ),
    "cert-manager": (
        {"certificates": {"mode": "cert-manager"}},
        "egress-guard",
        ("--cert-manager",),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_chart_renders_what_manifests_renders(case: str) -> None:
    values, namespace, args = CASES[case]
    assert_same_objects(chart_objects(values, namespace), expected_objects("-n", namespace, *args))


def test_the_chart_reads_the_policy_file_as_manifests_does(custom_policy_file: Path) -> None:
    """Label prefix, exempt namespaces, DNS (bare addresses as /32), workload kinds (rules and
    RBAC), the loosening webhook and the report RBAC all come from the policy value."""
    chart = chart_objects({"policy": CUSTOM_POLICY}, "egress")
    assert_same_objects(
        chart, expected_objects("-n", "egress", "--config", str(custom_policy_file))
    )
    hooks = chart[("ValidatingWebhookConfiguration", "", "egress-guard")]["webhooks"]
    assert "namespaces-loosening.validate.egress.example.org" in [h["name"] for h in hooks]


@pytest.mark.parametrize(
    "backends", [["cilium"], ["networkpolicy", "istio"], ["networkpolicy", "cilium", "istio"]]
)
def test_the_rbac_follows_the_backends(tmp_path: Path, backends: list[str]) -> None:
    """The generated kinds' rules are those of the policy file's backends, as `manifests`."""
    text = CUSTOM_POLICY + f"backends: [{', '.join(backends)}]\n"
    (tmp_path / "policy.yaml").write_text(text)
    chart = chart_objects({"policy": text}, "egress-guard")
    assert_same_objects(chart, expected_objects("--config", str(tmp_path / "policy.yaml")))
    rules = chart[("ClusterRole", "", "egress-guard-webhook")]["rules"]
    groups = {group for rule in rules for group in rule["apiGroups"]}
    assert ("cilium.io" in groups) is ("cilium" in backends)
    assert ("networking.istio.io" in groups) is ("istio" in backends)
    assert ("networking.k8s.io" in groups) is ("networkpolicy" in backends)


def test_the_policy_reports_rbac_follows_the_format(tmp_path: Path) -> None:
    text = CUSTOM_POLICY.replace("format: openreports", "format: policyreport")
    (tmp_path / "policy.yaml").write_text(text)
    chart = chart_objects({"policy": text}, "egress-guard")
    assert_same_objects(chart, expected_objects("--config", str(tmp_path / "policy.yaml")))
    rules = chart[("ClusterRole", "", "egress-guard-reconciler")]["rules"]
    assert {"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports"]}.items() <= rules[
        -1
    ].items()


def test_the_default_policy_is_the_example_and_the_version_the_packages() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["policy"] == EXAMPLE_POLICY_TEXT
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (__version__, __version__), (
        "bump deploy/helm/egress-guard/Chart.yaml with webhook/__init__.py"
    )
    deployment = chart_objects({}, "egress-guard")[("Deployment", "egress-guard", "egress-guard")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"egress-guard:{__version__}"


# --- values that `manifests` has no option for: its objects, changed where the value says -----


def webhook_container(objects: Mapping[Key, Doc], namespace: str = "egress-guard") -> Doc:
    deployment = objects[("Deployment", namespace, "egress-guard")]
    container: Doc = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_replicas_resources_and_pull_policy_change_only_their_fields() -> None:
    resources = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    reconciler = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "96Mi"}}
    chart = chart_objects(
        {
            "replicas": 3,
            "resources": resources,
            "image": {"repository": "egress-guard", "pullPolicy": "Always"},
            "reconciler": {"replicas": 1, "resources": reconciler},
        },
        "egress-guard",
    )
    expected = expected_objects()
    server = expected[("Deployment", "egress-guard", "egress-guard")]
    server["spec"]["replicas"] = 3
    webhook_container(expected).update(resources=resources, imagePullPolicy="Always")
    other = expected[("Deployment", "egress-guard", "egress-guard-reconciler")]
    other["spec"]["replicas"] = 1
    other["spec"]["template"]["spec"]["containers"][0] |= {
        "resources": reconciler,
        "imagePullPolicy": "Always",
    }
    assert_same_objects(chart, expected)


def test_one_replica_has_no_disruption_budget_that_would_block_every_drain() -> None:
    chart = chart_objects({"replicas": 1}, "egress-guard")
    expected = expected_objects()
    del expected[("PodDisruptionBudget", "egress-guard", "egress-guard")]
    expected[("Deployment", "egress-guard", "egress-guard")]["spec"]["replicas"] = 1
    assert_same_objects(chart, expected)


def test_without_the_reconciler_its_objects_and_its_account_go() -> None:
    chart = chart_objects({"reconciler": {"enabled": False}}, "egress-guard")
    expected = expected_objects()
    reconciler = {
        key
        for key, doc in expected.items()
        if doc["metadata"]["labels"].get("app.kubernetes.io/component") == "reconciler"
    }
    assert len(reconciler) == 6  # Deployment, ServiceAccount, 2 roles, 2 bindings
    for key in reconciler:
        del expected[key]
    reader = expected[("ClusterRoleBinding", "", "egress-guard-workload-reader")]
    reader["subjects"] = [s for s in reader["subjects"] if s["name"] == "egress-guard"]
    assert_same_objects(chart, expected)


def test_the_network_policy_can_be_left_to_the_cluster_admin() -> None:
    chart = chart_objects({"networkPolicy": {"enabled": False}}, "egress-guard")
    expected = expected_objects()
    del expected[("NetworkPolicy", "egress-guard", "egress-guard")]
    assert_same_objects(chart, expected)


def test_the_service_monitor_is_off_by_default_and_scrapes_the_service_over_tls() -> None:
    assert not [d for d in render({}) if d["kind"] == "ServiceMonitor"]
    values = {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}}
    objects = chart_objects(values, "egress")
    monitor = objects.pop(("ServiceMonitor", "egress", "egress-guard"))
    assert_same_objects(objects, expected_objects("-n", "egress"))
    service = objects[("Service", "egress", "egress-guard")]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["egress"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert endpoint | {"interval": "30s"} == {
        "port": "https",
        "path": "/metrics",
        "scheme": "https",
        "interval": "30s",
        "tlsConfig": {
            "serverName": "egress-guard.egress.svc",
            "ca": {"secret": {"name": "egress-guard-tls", "key": "ca.crt"}},
        },
    }


# --- every rendered object against the Kubernetes schema -----------------------------------

SCHEMA_CASES = {
    **{name: (values, namespace) for name, (values, namespace, _) in CASES.items()},
    "custom-policy": ({"policy": CUSTOM_POLICY}, "egress"),
    "service-monitor": ({"metrics": {"serviceMonitor": {"enabled": True}}}, "egress-guard"),
    "no-reconciler": ({"reconciler": {"enabled": False}, "replicas": 1}, "egress-guard"),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
def test_every_rendered_object_is_valid_against_the_kubernetes_schema(case: str) -> None:
    values, namespace = SCHEMA_CASES[case]
    checked = 0
    for doc in render(values, namespace):
        if doc["apiVersion"].startswith(NOT_IN_KUBERNETES_SCHEMA):
            continue
        assert schema_errors(doc) is None, f"{doc['kind']} {doc['metadata']['name']}"
        checked += 1
    assert checked >= 14


# --- values.schema.json ----------------------------------------------------------------------

BAD_VALUES = [
    pytest.param({"replicas": 0}, "/replicas': minimum", id="no-replicas"),
    pytest.param({"replicas": "3"}, "/replicas': got string, want integer", id="replicas-text"),
    pytest.param({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", id="pull-policy"),
    pytest.param({"image": {"repository": ""}}, "/image/repository", id="no-repository"),
    pytest.param({"replica": 3}, "additional properties 'replica' not allowed", id="unknown-key"),
    pytest.param({"certificates": {"mode": "vault"}}, "/certificates/mode", id="cert-mode"),
    pytest.param({"policy": ""}, "/policy': minLength", id="empty-policy"),
    pytest.param({"policy": {"labelPrefix": "x"}}, "/policy': got object", id="policy-object"),
    pytest.param({"resources": {"requests": {"cpu": "lots"}}}, "/resources/requests/cpu", id="cpu"),
    pytest.param({"resources": {"limit": {}}}, "'limit' not allowed", id="resources-key"),
    pytest.param({"reconciler": {"enabled": "yes"}}, "/reconciler/enabled", id="enabled-text"),
    pytest.param({"reconciler": {"replicas": 0}}, "/reconciler/replicas", id="reconciler-zero"),
    pytest.param(
        {"networkPolicy": {"apiServerCIDRs": ["api.example"]}}, "/apiServerCIDRs/0", id="cidr"
    ),
    pytest.param(
        {"metrics": {"serviceMonitor": {"interval": "often"}}}, "/interval", id="interval"
    ),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES)
def test_the_values_schema_refuses_bad_values(values: Doc, message: str) -> None:
    with pytest.raises(RenderError) as refused:
        render(values)
    assert "values don't meet the specifications of the schema" in str(refused.value)
    assert message in str(refused.value)


def test_a_policy_that_is_no_mapping_is_refused_with_a_message() -> None:
    with pytest.raises(RenderError, match=r"values\.policy is not a YAML mapping"):
        render({"policy": "- a list"})


GOOD_VALUES = [
    pytest.param({}, id="defaults"),
    pytest.param({"replicas": 1, "reconciler": {"replicas": 3}}, id="replicas"),
    pytest.param(
        {"image": {"repository": "registry.example:5000/team/egress-guard", "tag": "0.1.0-rc.1"}},
        id="image",
    ),
    pytest.param({"resources": {"requests": {"cpu": 0.5, "memory": "1.5Gi"}}}, id="resources"),
    pytest.param({"networkPolicy": {"apiServerCIDRs": ["172.18.0.2/32", "fd00::1"]}}, id="cidrs"),
    pytest.param({"metrics": {"serviceMonitor": {"enabled": True, "interval": "1m30s"}}}, id="sm"),
    pytest.param({"certificates": {"mode": "cert-manager"}}, id="cert-manager"),
]


@pytest.mark.parametrize("values", GOOD_VALUES)
def test_the_values_schema_accepts_good_values(values: Doc) -> None:
    assert [d for d in render(values) if d["kind"] == "ValidatingWebhookConfiguration"]


# --- the self-signed certificates hook -----------------------------------------------------


def hooks(values: Mapping[str, Any], namespace: str = "egress-guard") -> dict[Key, Doc]:
    return by_key([d for d in render(values, namespace) if is_hook(d)])


def test_cert_manager_renders_no_hook_and_self_signed_its_jobs_in_order() -> None:
    assert hooks({"certificates": {"mode": "cert-manager"}}) == {}
    found = hooks({}, "egress")
    jobs = {key[2]: doc for key, doc in found.items() if key[0] == "Job"}
    assert sorted(jobs) == ["egress-guard-certs-generate", "egress-guard-certs-inject-ca"]
    when = {name: job["metadata"]["annotations"]["helm.sh/hook"] for name, job in jobs.items()}
    assert when == {
        "egress-guard-certs-generate": "pre-install,pre-upgrade",
        "egress-guard-certs-inject-ca": "post-install,post-upgrade",
    }
    for name, job in jobs.items():
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"][-1] == name.removeprefix("egress-guard-certs-")
        assert container["image"] == f"egress-guard:{__version__}"
        assert pod["serviceAccountName"] == "egress-guard-certs"
    setup = [doc for key, doc in found.items() if key[0] != "Job"]
    assert len(setup) == 6
    for doc in setup:  # made before each Job: weight below the Jobs'
        assert int(doc["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0
    script = found[("ConfigMap", "egress", "egress-guard-certs")]["data"]["certs-hook.py"]
    assert script == (CHART / "files" / "certs-hook.py").read_text()


def test_the_hook_may_write_only_its_secrets_and_caBundle() -> None:
    found = hooks({})
    role = found[("Role", "egress-guard", "egress-guard-certs")]["rules"]
    assert role == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["egress-guard-ca", "egress-guard-tls"],
            "verbs": ["get", "patch"],
        },
    ]
    cluster_role = found[("ClusterRole", "", "egress-guard-certs")]["rules"]
    assert [rule["resourceNames"] for rule in cluster_role] == [["egress-guard"]]
    assert {verb for rule in cluster_role for verb in rule["verbs"]} == {"get", "patch"}


class FakeSecrets:
    """The three Secret calls the hook makes, on a dict."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, str]] = {}

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        from kubernetes.client.rest import ApiException

        assert namespace == "egress"
        if name not in self.secrets:
            raise ApiException(status=404)
        return types.SimpleNamespace(data=dict(self.secrets[name]))

    def create_namespaced_secret(self, namespace: str, body: Any) -> None:
        from kubernetes.client.rest import ApiException

        if body.metadata.name in self.secrets:
            raise ApiException(status=409)
        self.secrets[body.metadata.name] = dict(body.data)

    def patch_namespaced_secret(self, name: str, namespace: str, body: Doc) -> None:
        self.secrets[name] |= body["data"]


def load_hook(monkeypatch: pytest.MonkeyPatch, api: FakeSecrets, calls: list[Sequence[str]]) -> Any:
    monkeypatch.setenv("EGRESS_GUARD_NAMESPACE", "egress")
    monkeypatch.setenv("EGRESS_GUARD_SERVICE", "egress-guard")
    spec = importlib.util.spec_from_file_location("certs_hook", CHART / "files" / "certs-hook.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(module.client, "CoreV1Api", lambda: api)

    def egress_guard(*args: str) -> None:  # the image's `egress-guard certs ...`, in process
        calls.append(args)
        if args[0] == "inject-ca":
            out = Path(args[args.index("--out") + 1])
            calls.append(tuple(sorted(p.name for p in out.iterdir())))
            return
        result = CliRunner().invoke(main, ["certs", *args])
        assert result.exit_code == 0, result.output

    monkeypatch.setattr(module, "egress_guard", egress_guard)
    return module


def decoded(api: FakeSecrets, name: str) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in api.secrets[name].items()}


def test_the_hook_makes_the_secrets_once_and_keeps_the_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    api, calls = FakeSecrets(), list[Sequence[str]]()
    hook = load_hook(monkeypatch, api, calls)
    hook.main("generate")
    assert calls[0][:5] == ("generate", "--service", "egress-guard", "--namespace", "egress")
    ca, tls = decoded(api, "egress-guard-ca"), decoded(api, "egress-guard-tls")
    assert set(ca) == {"ca.crt", "ca.key", "ca-bundle.crt"}
    assert set(tls) == {"tls.crt", "tls.key", "ca.crt"}
    assert tls["ca.crt"] == ca["ca.crt"]
    from cryptography import x509

    names = x509.load_pem_x509_certificate(tls["tls.crt"]).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "egress-guard.egress.svc" in names.value.get_values_for_type(x509.DNSName)
    hook.main("generate")  # an upgrade: nothing is due, nothing changes
    assert decoded(api, "egress-guard-ca") == ca
    assert decoded(api, "egress-guard-tls") == tls
    hook.main("inject-ca")
    assert calls[-2][:2] == ("inject-ca", "--out") and calls[-2][-2:] == ("--name", "egress-guard")
    # the CA restored for inject-ca to read (it trusts ca-bundle.crt: two CAs during a roll)
    assert calls[-1] == ("ca-bundle.crt", "ca.crt", "ca.key")


def test_the_hook_refuses_an_unknown_step(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = load_hook(monkeypatch, FakeSecrets(), [])
    with pytest.raises(SystemExit, match="unknown step 'renew'"):
        hook.main("renew")


def test_the_policy_text_reaches_the_config_map_as_written() -> None:
    """The ConfigMap holds the policy text byte for byte, whatever Helm's quoting."""
    text = CUSTOM_POLICY + '# quotes " and \\ and <tags> & "unicode" é\n'
    config_map = chart_objects({"policy": text}, "egress-guard")[
        ("ConfigMap", "egress-guard", "egress-guard-policy")
    ]
    assert config_map["data"]["policy.yaml"] == text
    assert json.loads(json.dumps(config_map["data"]))["policy.yaml"] == text
