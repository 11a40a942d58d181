"""The local API server serves custom resources as the API server does once their CRD exists:
404 before, routes and discovery after, schema validation (422 naming the field), pruning of
unknown fields, defaults, CEL rules, and nothing left once the CRD is deleted. Through the real
client; the corpus's CRDs (Cilium, Istio, PolicyReport, OpenReports) when ../shared/corpus is here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from local_apiserver import LocalApiServer

CRDS = Path(__file__).resolve().parents[2] / "shared/corpus/crds"
NAMESPACE = "team-a"

WIDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["size"],
            "x-kubernetes-validations": [
                {"rule": "self.size <= self.limit", "message": "size may not exceed limit"}
            ],
            "properties": {
                "size": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "default": 10},
                "colour": {"type": "string", "enum": ["red", "blue"]},
                "host": {"type": "string", "pattern": "^[a-z.]+$"},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": True},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "frozen": {
                    "type": "string",
                    "x-kubernetes-validations": [
                        {"rule": "self == oldSelf", "message": "frozen is immutable"}
                    ],
                },
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}


def widget_crd(
    scope: str = "Namespaced", versions: tuple[str, ...] = ("v1",), storage: str = "v1"
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {
            "group": "example.io",
            "scope": scope,
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": version == storage,
                    "schema": {"openAPIV3Schema": WIDGET_SCHEMA},
                    "subresources": {"status": {}},
                }
                for version in versions
            ],
        },
    }


def widget(name: str = "w", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.io/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 1, **spec},
    }


@pytest.fixture
def api() -> Iterator[LocalApiServer]:
    with LocalApiServer(max_lifetime_s=60) as server:
        server.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        yield server


@pytest.fixture
def kube(api: LocalApiServer, tmp_path: Path) -> client.ApiClient:
    kube_client = config.new_client_from_config(str(api.kubeconfig(tmp_path / "kubeconfig")))
    kube_client.configuration.retries = False
    return kube_client


def corpus(file: str) -> Path:
    if not CRDS.exists():
        pytest.skip("../shared/corpus is not here")
    return CRDS / file


def request(
    kube: client.ApiClient, method: str, path: str, body: Any = None, query: Any = None
) -> tuple[int, dict[str, Any], Any]:
    """Any request through the client's transport: status, JSON body, headers."""
    params = kube.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    try:
        response = kube.call_api(*params)
    except client.ApiException as err:
        return err.status, json.loads(err.body), err.headers
    response.read()
    return response.status, json.loads(response.data), response.getheaders()


def create(
    kube: client.ApiClient, obj: dict[str, Any], plural: str, **query: str
) -> tuple[int, dict[str, Any], Any]:
    group_version = obj["apiVersion"]
    path = f"/apis/{group_version}/namespaces/{NAMESPACE}/{plural}"
    return request(kube, "POST", path, obj, list(query.items()))


def install(kube: client.ApiClient, crd: dict[str, Any]) -> dict[str, Any]:
    extensions = client.ApiextensionsV1Api(kube)
    response = extensions.create_custom_resource_definition(crd, _preload_content=False)
    return dict(json.loads(response.data))


class TestServing:
    def test_a_resource_is_unknown_until_its_crd_exists_then_served_and_discovered(
        self, kube: client.ApiClient
    ) -> None:
        path = f"/apis/example.io/v1/namespaces/{NAMESPACE}/widgets"
        assert request(kube, "GET", path)[:2] == (
            404,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "the server could not find the requested resource",
                "reason": "NotFound",
                "details": {},
                "code": 404,
            },
        )
        groups = request(kube, "GET", "/apis")[1]["groups"]
        assert "example.io" not in [g["name"] for g in groups]
        assert request(kube, "GET", "/apis/example.io/v1")[0] == 404

        stored = install(kube, widget_crd())
        established = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
        assert established == {"NamesAccepted": "True", "Established": "True"}

        status, listing, _ = request(kube, "GET", path)
        assert (status, listing["kind"], listing["items"]) == (200, "WidgetList", [])
        groups = request(kube, "GET", "/apis")[1]["groups"]
        (example,) = [g for g in groups if g["name"] == "example.io"]
        assert example["preferredVersion"] == {"groupVersion": "example.io/v1", "version": "v1"}
        resources = request(kube, "GET", "/apis/example.io/v1")[1]["resources"]
        assert [(r["name"], r["kind"], r["namespaced"], r["singularName"]) for r in resources] == [
            ("widgets", "Widget", True, "widget")
        ]
        custom = client.CustomObjectsApi(kube)
        custom.create_namespaced_custom_object("example.io", "v1", NAMESPACE, "widgets", widget())
        got = custom.get_namespaced_custom_object("example.io", "v1", NAMESPACE, "widgets", "w")
        assert got["spec"] == {"size": 1, "limit": 10}  # the default filled in

    def test_a_cluster_scoped_crd_serves_at_the_cluster_scope_only(
        self, kube: client.ApiClient
    ) -> None:
        install(kube, widget_crd(scope="Cluster"))
        cluster_path = "/apis/example.io/v1/widgets"
        assert request(kube, "POST", cluster_path, widget())[0] == 201
        assert request(kube, "GET", f"{cluster_path}/w")[1]["metadata"]["name"] == "w"
        namespaced = f"/apis/example.io/v1/namespaces/{NAMESPACE}/widgets"
        assert request(kube, "POST", namespaced, widget("x"))[0] == 404

    def test_every_served_version_reads_one_store_in_its_own_apiversion(
        self, kube: client.ApiClient
    ) -> None:
        install(kube, widget_crd(versions=("v1alpha1", "v1beta1", "v1"), storage="v1beta1"))
        assert create(kube, widget(), "widgets")[0] == 201
        for version in ("v1alpha1", "v1beta1", "v1"):
            status, got, _ = request(
                kube, "GET", f"/apis/example.io/{version}/namespaces/{NAMESPACE}/widgets/w"
            )
            assert (status, got["apiVersion"]) == (200, f"example.io/{version}")
        (group,) = [
            g for g in request(kube, "GET", "/apis")[1]["groups"] if g["name"] == "example.io"
        ]
        assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1", "v1alpha1"]
        assert group["preferredVersion"]["version"] == "v1"

    def test_deleting_the_crd_deletes_its_objects_and_stops_serving(
        self, api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        install(kube, widget_crd())
        assert create(kube, widget(), "widgets")[0] == 201
        custom = client.CustomObjectsApi(kube)
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            "example.io",
            "v1",
            NAMESPACE,
            "widgets",
            timeout_seconds=10,
        )
        assert next(stream)["type"] == "ADDED"
        client.ApiextensionsV1Api(kube).delete_custom_resource_definition("widgets.example.io")
        events = [(e["type"], e["object"]["metadata"]["name"]) for e in stream]
        assert events == [("DELETED", "w")]  # and the watch ended with the CRD
        path = f"/apis/example.io/v1/namespaces/{NAMESPACE}/widgets"
        assert request(kube, "GET", path)[:2][0] == 404
        assert request(kube, "GET", path)[1]["details"] == {}
        assert "example.io" not in [g["name"] for g in request(kube, "GET", "/apis")[1]["groups"]]
        install(kube, widget_crd())  # installed again: empty, not the old objects
        assert request(kube, "GET", path)[1]["items"] == []

    def test_a_crd_the_api_server_refuses_is_refused(self, kube: client.ApiClient) -> None:
        misnamed = widget_crd()
        misnamed["metadata"]["name"] = "gadgets.example.io"
        status, body, _ = request(
            kube, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", misnamed
        )
        assert (status, body["reason"]) == (422, "Invalid")
        assert body["details"]["causes"][0]["field"] == "metadata.name"

        bad_pattern = widget_crd()
        schema = copy.deepcopy(WIDGET_SCHEMA)
        schema["properties"]["spec"]["properties"]["host"]["pattern"] = "^(unclosed$"
        bad_pattern["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = schema
        status, body, _ = request(
            kube, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", bad_pattern
        )
        assert status == 422
        assert body["details"]["causes"][0]["field"].endswith(
            "openAPIV3Schema.properties[spec].properties[host].pattern"
        )
        assert request(kube, "GET", "/apis/example.io/v1")[0] == 404

    def test_started_with_crds_and_installed_from_files(self, tmp_path: Path) -> None:
        (tmp_path / "widgets.yaml").write_text(
            "---\n" + json.dumps(widget_crd()) + "\n---\n"
            '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "skipped"}}\n'
        )
        with LocalApiServer(crds=[tmp_path / "widgets.yaml"], max_lifetime_s=30) as server:
            assert server.resource("widgets").api_version == "example.io/v1"
            assert server.get("namespaces", "skipped") is None  # only CRDs are installed
            assert server.calls == []
            server.uninstall_crd("widgets.example.io")
            with pytest.raises(KeyError):
                server.resource("widgets")


class TestSchema:
    @pytest.fixture(autouse=True)
    def widgets(self, kube: client.ApiClient) -> None:
        install(kube, widget_crd())

    @pytest.mark.parametrize(
        ("spec", "field", "message"),
        [
            (
                {"size": "big"},
                "spec.size",
                'Invalid value: "string": spec.size in body must be of type integer: "string"',
            ),
            (
                {"size": 0},
                "spec.size",
                "Invalid value: 0: spec.size in body should be greater than or equal to 1",
            ),
            (
                {"colour": "green"},
                "spec.colour",
                'Unsupported value: "green": supported values: "red", "blue"',
            ),
            (
                {"host": "Bad_Host"},
                "spec.host",
                "Invalid value: \"Bad_Host\": spec.host in body should match '^[a-z.]+$'",
            ),
            ({"tags": ["a", "b", "c"]}, "spec.tags", "Too many: 3: must have at most 2 items"),
            (
                {"port": 1.5},
                "spec.port",
                'Invalid value: "number": spec.port in body must be of type integer or string: '
                '"number"',
            ),
            ({"size": 11}, "spec", 'Invalid value: "object": size may not exceed limit'),
        ],
    )
    def test_an_invalid_object_is_refused_naming_the_field(
        self,
        api: LocalApiServer,
        kube: client.ApiClient,
        spec: dict[str, Any],
        field: str,
        message: str,
    ) -> None:
        for dry_run in ({"dryRun": "All"}, {}):
            status, body, _ = create(kube, widget(**spec), "widgets", **dry_run)
            assert (status, body["reason"]) == (422, "Invalid")
            first, *rest = body["details"]["causes"]
            assert (first["field"], first["message"]) == (field, message)
            assert body["details"]["kind"] == "Widget" and body["details"]["group"] == "example.io"
            if rest:  # a type or enum failure: the CEL rules were left unchecked, and said so
                (unchecked,) = rest
                assert unchecked["field"] == "<nil>"
                assert "some validation rules were not checked" in unchecked["message"]
                assert body["message"].startswith(
                    f'Widget.example.io "w" is invalid: [{field}: {message}, <nil>: '
                )
            else:
                assert body["message"] == f'Widget.example.io "w" is invalid: {field}: {message}'
        assert api.objects("widgets") == []

    def test_required_fields_and_several_causes_at_once(self, kube: client.ApiClient) -> None:
        obj = widget(colour="green")
        del obj["spec"]["size"]
        status, body, _ = create(kube, obj, "widgets")
        assert status == 422
        causes = {(c["field"], c["reason"]) for c in body["details"]["causes"]}
        assert ("spec.size", "FieldValueRequired") in causes
        assert ("spec.colour", "FieldValueNotSupported") in causes
        assert body["message"].startswith('Widget.example.io "w" is invalid: [')

    def test_unknown_fields_are_pruned_with_a_warning_or_refused_when_strict(
        self, api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        obj = widget(typo=True, extra={"anything": {"goes": 1}})
        obj["metadata"]["notAMetaField"] = "x"
        obj["topLevel"] = 1
        status, created, headers = create(kube, obj, "widgets")
        assert status == 201
        assert created["spec"] == {"size": 1, "limit": 10, "extra": {"anything": {"goes": 1}}}
        assert "topLevel" not in created and "notAMetaField" not in created["metadata"]
        assert api.get("widgets", "w", NAMESPACE) == created
        warning = headers["Warning"]
        for dropped in ("spec.typo", "metadata.notAMetaField", "topLevel"):
            assert f'unknown field \\"{dropped}\\"' in warning

        status, body, _ = create(kube, widget("s", typo=True), "widgets", fieldValidation="Strict")
        assert (status, body["reason"]) == (400, "BadRequest")
        assert body["message"] == 'strict decoding error: unknown field "spec.typo"'
        assert api.get("widgets", "s", NAMESPACE) is None

    def test_updates_and_patches_are_validated_and_pruned_too(
        self, api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        custom = client.CustomObjectsApi(kube)
        args = ("example.io", "v1", NAMESPACE, "widgets", "w")
        custom.create_namespaced_custom_object(*args[:4], widget(frozen="yes"))
        with pytest.raises(client.ApiException) as caught:
            custom.patch_namespaced_custom_object(*args, {"spec": {"tags": ["a", "b", "c"]}})
        assert caught.value.status == 422
        with pytest.raises(client.ApiException) as caught:
            custom.patch_namespaced_custom_object(*args, {"spec": {"frozen": "no"}})
        (cause,) = json.loads(caught.value.body)["details"]["causes"]
        assert cause == {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "string": frozen is immutable',
            "field": "spec.frozen",
        }
        patched = custom.patch_namespaced_custom_object(*args, {"spec": {"size": 2, "typo": 1}})
        assert patched["spec"] == {"size": 2, "limit": 10, "frozen": "yes"}
        assert patched["metadata"]["generation"] == 2
        assert api.get("widgets", "w", NAMESPACE)["spec"]["size"] == 2  # type: ignore[index]

    def test_status_is_a_subresource_and_pruned_against_its_schema(
        self, kube: client.ApiClient
    ) -> None:
        custom = client.CustomObjectsApi(kube)
        args = ("example.io", "v1", NAMESPACE, "widgets", "w")
        obj = widget()
        obj["status"] = {"phase": "Ignored"}
        created = custom.create_namespaced_custom_object(*args[:4], obj)
        assert "status" not in created
        created["status"] = {"phase": "Ready", "unknown": 1}
        updated = custom.replace_namespaced_custom_object_status(*args, created)
        assert updated["status"] == {"phase": "Ready"}
        assert updated["metadata"]["generation"] == 1


class TestCorpus:
    """Objects valid per the real CRDs' schemas are accepted; invalid ones refused as the API
    server refuses them."""

    @pytest.fixture
    def corpus_api(self, api: LocalApiServer) -> LocalApiServer:
        api.install_crds(
            corpus("cilium-ciliumnetworkpolicies.yaml"),
            corpus("istio-serviceentry-sidecar.yaml"),
            corpus("policyreports.yaml"),
            corpus("openreports.yaml"),
        )
        return api

    @staticmethod
    def cilium(**egress: Any) -> dict[str, Any]:
        rule = {
            "toFQDNs": [{"matchName": "api.stripe.com"}],
            "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
            **egress,
        }
        return {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "egress"},
            "spec": {"endpointSelector": {"matchLabels": {"app": "api"}}, "egress": [rule]},
        }

    def test_cilium(self, corpus_api: LocalApiServer, kube: client.ApiClient) -> None:
        plural = "ciliumnetworkpolicies"
        status, created, _ = create(kube, self.cilium(), plural)
        assert status == 201, created
        assert created["spec"]["egress"][0]["toFQDNs"] == [{"matchName": "api.stripe.com"}]

        status, body, _ = create(kube, self.cilium(toPorts="443"), plural)
        assert status == 422
        assert body["message"] == (
            'CiliumNetworkPolicy.cilium.io "egress" is invalid: spec.egress[0].toPorts: Invalid '
            'value: "string": spec.egress[0].toPorts in body must be of type array: "string"'
        )
        ports = [{"port": str(1000 + n), "protocol": "TCP"} for n in range(41)]
        status, body, _ = create(kube, self.cilium(toPorts=[{"ports": ports}]), plural)
        assert [c["field"] for c in body["details"]["causes"]] == [
            "spec.egress[0].toPorts[0].ports"
        ]
        status, body, _ = create(
            kube, self.cilium(toFQDNs=[{"matchName": "a.io", "matchPattern": "*.a.io"}]), plural
        )
        assert (status, body["details"]["causes"][0]["field"]) == (422, "spec.egress[0].toFQDNs[0]")
        assert "must validate one and only one schema (oneOf)" in body["message"]

    def test_cilium_go_patterns_are_enforced(
        self, corpus_api: LocalApiServer, kube: client.ApiClient
    ) -> None:
        """`^\\PC*$` (no control characters) is Go syntax Python's `re` cannot compile."""
        plural = "ciliumnetworkpolicies"
        accepted = self.cilium()
        accepted["spec"]["log"] = {"value": "egress to stripé"}
        assert create(kube, accepted, plural)[0] == 201
        refused = self.cilium()
        refused["metadata"]["name"] = "bell"
        refused["spec"]["log"] = {"value": "ring\x07"}
        status, body, _ = create(kube, refused, plural)
        assert (status, body["details"]["causes"][0]["field"]) == (422, "spec.log.value")
        assert "should match '^\\PC*$'" in body["message"]

    def test_istio(self, corpus_api: LocalApiServer, kube: client.ApiClient) -> None:
        entry: dict[str, Any] = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "stripe"},
            "spec": {
                "hosts": ["api.stripe.com"],
                "location": "MESH_EXTERNAL",
                "resolution": "DNS",
                "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
            },
        }
        assert create(kube, entry, "serviceentries")[0] == 201
        sidecar = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": {"name": "default"},
            "spec": {
                "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
                "egress": [{"hosts": ["./*", "istio-system/*"]}],
            },
        }
        assert create(kube, sidecar, "sidecars")[0] == 201

        duplicated = copy.deepcopy(entry)
        duplicated["metadata"]["name"] = "twice"
        duplicated["spec"]["ports"].append({"number": 443, "name": "again", "protocol": "TLS"})
        status, body, _ = create(kube, duplicated, "serviceentries")
        assert (status, body["details"]["causes"]) == (
            422,
            [
                {
                    "reason": "FieldValueInvalid",
                    "message": 'Invalid value: "array": port number cannot be duplicated',
                    "field": "spec.ports",
                }
            ],
        )
        wildcard = copy.deepcopy(entry)
        wildcard["metadata"]["name"] = "wildcard"
        wildcard["spec"]["hosts"] = ["*"]
        status, body, _ = create(kube, wildcard, "serviceentries")
        assert status == 422
        assert body["details"]["causes"][0]["field"] == "spec.hosts[0]"
        unknown_mode = copy.deepcopy(sidecar)
        unknown_mode["spec"]["outboundTrafficPolicy"]["mode"] = "OPEN"
        status, body, _ = create(kube, unknown_mode, "sidecars")
        assert (status, body["details"]["causes"][0]["field"]) == (
            422,
            "spec.outboundTrafficPolicy.mode",
        )
        # the same object through another served version
        status, got, _ = request(
            kube,
            "GET",
            f"/apis/networking.istio.io/v1beta1/namespaces/{NAMESPACE}/serviceentries/stripe",
        )
        assert (status, got["apiVersion"], got["spec"]["hosts"]) == (
            200,
            "networking.istio.io/v1beta1",
            ["api.stripe.com"],
        )

    @pytest.mark.parametrize(
        ("api_version", "kind", "plural"),
        [
            ("wgpolicyk8s.io/v1alpha2", "PolicyReport", "policyreports"),
            ("openreports.io/v1alpha1", "Report", "reports"),
        ],
    )
    def test_policy_reports(
        self,
        corpus_api: LocalApiServer,
        kube: client.ApiClient,
        api_version: str,
        kind: str,
        plural: str,
    ) -> None:
        report: dict[str, Any] = {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": "egress-guard"},
            "summary": {"pass": 1, "fail": 0},
            "results": [
                {
                    "source": "egress-guard",
                    "policy": "egress",
                    "result": "pass",
                    "resources": [{"kind": "Deployment", "name": "api", "namespace": NAMESPACE}],
                    "unknownField": "dropped",
                }
            ],
        }
        status, created, _ = create(kube, report, plural)
        assert status == 201, created
        assert "unknownField" not in created["results"][0]
        assert created["results"][0]["resources"][0]["name"] == "api"

        report["metadata"]["name"] = "bad"
        report["results"][0]["result"] = "maybe"
        status, body, _ = create(kube, report, plural)
        assert (status, body["details"]["causes"][0]["field"]) == (422, "results[0].result")
        group = api_version.split("/", maxsplit=1)[0]
        assert body["message"].startswith(f'{kind}.{group} "bad" is invalid')
