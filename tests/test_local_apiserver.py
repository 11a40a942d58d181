"""The local API server keeps the Kubernetes API's semantics, seen through the real client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config
from local_apiserver import Call, Fault, LocalApiServer

from webhook.cluster.client import api_client

NETPOL: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "allow-dns", "labels": {"team": "a"}},
    "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalApiServer]:
    with LocalApiServer(max_lifetime_s=60) as server:
        server.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        yield server


@pytest.fixture
def kube(api: LocalApiServer, tmp_path: Path) -> client.ApiClient:
    kube_client = config.new_client_from_config(str(api.kubeconfig(tmp_path / "kubeconfig")))
    kube_client.configuration.retries = False
    return kube_client


def error_of(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(client.ApiException) as caught:
        call()
    return caught.value.status, json.loads(caught.value.body)


def raw(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


def post_raw(kube: client.ApiClient, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    """POST a body the typed client would refuse to send, through the same transport."""
    request = kube.param_serialize(
        "POST",
        path,
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = kube.call_api(*request)
    response.read()
    return response.status, json.loads(response.data)


class TestObjects:
    def test_create_sets_server_fields_and_get_returns_them(self, kube: client.ApiClient) -> None:
        net = client.NetworkingV1Api(kube)
        created = raw(
            net.create_namespaced_network_policy("team-a", NETPOL, _preload_content=False)
        )
        meta = created["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
        assert meta["generation"] == 1
        read = raw(
            net.read_namespaced_network_policy("allow-dns", "team-a", _preload_content=False)
        )
        assert read == created

    def test_not_found_is_a_status_body(self, kube: client.ApiClient) -> None:
        net = client.NetworkingV1Api(kube)
        status, body = error_of(lambda: net.read_namespaced_network_policy("nope", "team-a"))
        assert status == 404
        assert body["kind"] == "Status"
        assert body["reason"] == "NotFound"
        assert body["message"] == 'networkpolicies.networking.k8s.io "nope" not found'
        assert body["details"] == {
            "name": "nope",
            "group": "networking.k8s.io",
            "kind": "networkpolicies",
        }

    def test_creating_twice_is_already_exists(self, kube: client.ApiClient) -> None:
        net = client.NetworkingV1Api(kube)
        net.create_namespaced_network_policy("team-a", NETPOL)
        status, body = error_of(lambda: net.create_namespaced_network_policy("team-a", NETPOL))
        assert (status, body["reason"]) == (409, "AlreadyExists")

    def test_creating_in_a_missing_namespace_is_not_found(self, kube: client.ApiClient) -> None:
        net = client.NetworkingV1Api(kube)
        status, body = error_of(lambda: net.create_namespaced_network_policy("ghost", NETPOL))
        assert status == 404
        assert body["message"] == 'namespaces "ghost" not found'

    def test_a_stale_resource_version_is_a_conflict(self, kube: client.ApiClient) -> None:
        net = client.NetworkingV1Api(kube)
        first = raw(net.create_namespaced_network_policy("team-a", NETPOL, _preload_content=False))
        changed = {**first, "spec": {**first["spec"], "policyTypes": ["Egress", "Ingress"]}}
        second = raw(
            net.replace_namespaced_network_policy(
                "allow-dns", "team-a", changed, _preload_content=False
            )
        )
        assert int(second["metadata"]["resourceVersion"]) > int(
            first["metadata"]["resourceVersion"]
        )
        assert second["metadata"]["generation"] == 2
        status, body = error_of(
            lambda: net.replace_namespaced_network_policy("allow-dns", "team-a", first)
        )
        assert (status, body["reason"]) == (409, "Conflict")
        assert "the object has been modified" in body["message"]

    def test_a_no_op_update_keeps_the_resource_version(self, kube: client.ApiClient) -> None:
        net = client.NetworkingV1Api(kube)
        first = raw(net.create_namespaced_network_policy("team-a", NETPOL, _preload_content=False))
        again = raw(
            net.replace_namespaced_network_policy(
                "allow-dns", "team-a", first, _preload_content=False
            )
        )
        assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

    def test_label_only_changes_do_not_move_the_generation(self, kube: client.ApiClient) -> None:
        net = client.NetworkingV1Api(kube)
        net.create_namespaced_network_policy("team-a", NETPOL)
        patched = raw(
            net.patch_namespaced_network_policy(
                "allow-dns",
                "team-a",
                {"metadata": {"labels": {"team": "b"}}},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        )
        assert patched["metadata"]["labels"] == {"team": "b"}
        assert patched["metadata"]["generation"] == 1

    def test_invalid_objects_are_refused_with_422(self, kube: client.ApiClient) -> None:
        net = client.NetworkingV1Api(kube)
        bad_name = {**NETPOL, "metadata": {"name": "Not_A_Name"}}
        status, body = error_of(lambda: net.create_namespaced_network_policy("team-a", bad_name))
        assert (status, body["reason"]) == (422, "Invalid")
        bad_spec = {**NETPOL, "spec": {"policyTypes": ["Egress"]}}  # podSelector is required
        status, body = post_raw(
            kube, "/apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies", bad_spec
        )
        assert status == 422

    def test_namespaces_get_their_name_label(self, kube: client.ApiClient) -> None:
        core = client.CoreV1Api(kube)
        created = raw(core.create_namespace({"metadata": {"name": "b"}}, _preload_content=False))
        assert created["metadata"]["labels"] == {"kubernetes.io/metadata.name": "b"}
        assert created["status"] == {"phase": "Active"}

    def test_deleting_honours_preconditions(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        net = client.NetworkingV1Api(kube)
        net.create_namespaced_network_policy("team-a", NETPOL)
        stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))
        status, body = error_of(
            lambda: net.delete_namespaced_network_policy("allow-dns", "team-a", body=stale)
        )
        assert (status, body["reason"]) == (409, "Conflict")
        assert "Precondition failed" in body["message"]
        gone = raw(
            net.delete_namespaced_network_policy("allow-dns", "team-a", _preload_content=False)
        )
        assert gone["status"] == "Success"
        assert api.get("networkpolicies", "allow-dns", "team-a") is None


class TestDryRun:
    def test_dry_run_validates_and_writes_nothing(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        net = client.NetworkingV1Api(kube)
        before = api.store.resource_version()
        answer = raw(
            net.create_namespaced_network_policy(
                "team-a", NETPOL, dry_run="All", _preload_content=False
            )
        )
        assert answer["metadata"]["name"] == "allow-dns"
        assert api.get("networkpolicies", "allow-dns", "team-a") is None
        assert api.store.resource_version() == before
        status, _ = error_of(
            lambda: net.create_namespaced_network_policy(
                "team-a", {**NETPOL, "metadata": {"name": "BAD"}}, dry_run="All"
            )
        )
        assert status == 422
        (call, _bad) = api.calls
        assert call.dry_run and call.verb == "create"

    def test_dry_run_delete_keeps_the_object(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        net = client.NetworkingV1Api(kube)
        net.create_namespaced_network_policy("team-a", NETPOL)
        net.delete_namespaced_network_policy("allow-dns", "team-a", dry_run="All")
        assert api.get("networkpolicies", "allow-dns", "team-a") is not None


class TestLists:
    def test_label_selectors_and_items_as_the_api_lists_them(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        for name, labels in (("a", {"tier": "web"}), ("b", {"tier": "db"}), ("c", {})):
            api.seed(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": "team-a", "labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                }
            )
        core = client.CoreV1Api(kube)

        def names(selector: str) -> list[str]:
            listing = raw(
                core.list_namespaced_pod("team-a", label_selector=selector, _preload_content=False)
            )
            assert listing["kind"] == "PodList"
            assert all("kind" not in item for item in listing["items"])
            return [item["metadata"]["name"] for item in listing["items"]]

        assert names("tier=web") == ["a"]
        assert names("tier!=web") == ["b", "c"]
        assert names("tier in (web,db)") == ["a", "b"]
        assert names("tier") == ["a", "b"]
        assert names("!tier") == ["c"]
        assert names("") == ["a", "b", "c"]

    def test_pages_with_limit_and_continue(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        for index in range(5):
            api.seed({**NETPOL, "metadata": {"name": f"p{index}", "namespace": "team-a"}})
        net = client.NetworkingV1Api(kube)
        seen: list[str] = []
        token = None
        for _ in range(10):
            page = raw(
                net.list_network_policy_for_all_namespaces(
                    limit=2, _continue=token, _preload_content=False
                )
            )
            seen += [item["metadata"]["name"] for item in page["items"]]
            token = page["metadata"].get("continue")
            if not token:
                break
        assert seen == [f"p{index}" for index in range(5)]

    def test_pages_within_one_namespace_hold_only_its_objects(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})
        for namespace in ("team-a", "team-b"):
            for index in range(3):
                metadata = {"name": f"p{index}", "namespace": namespace}
                api.seed({**NETPOL, "metadata": metadata})
        net = client.NetworkingV1Api(kube)
        seen: list[tuple[str, str]] = []
        token = None
        for _ in range(10):
            page = raw(
                net.list_namespaced_network_policy(
                    "team-a", limit=2, _continue=token, _preload_content=False
                )
            )
            seen += [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in page["items"]]
            token = page["metadata"].get("continue")
            if not token:
                break
        assert seen == [("team-a", f"p{index}") for index in range(3)]

    def test_a_page_after_a_new_object_still_continues_in_order(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        for index in (0, 2, 4):
            api.seed({**NETPOL, "metadata": {"name": f"p{index}", "namespace": "team-a"}})
        net = client.NetworkingV1Api(kube)
        first = raw(net.list_network_policy_for_all_namespaces(limit=2, _preload_content=False))
        api.seed({**NETPOL, "metadata": {"name": "p3", "namespace": "team-a"}})
        rest = raw(
            net.list_network_policy_for_all_namespaces(
                limit=2, _continue=first["metadata"]["continue"], _preload_content=False
            )
        )
        names = [item["metadata"]["name"] for item in first["items"] + rest["items"]]
        assert names == ["p0", "p2", "p3", "p4"]


class TestServer:
    def test_version_as_set_with_or_without_the_trailing_slash(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        api.server_version = (1, 27)
        answer = raw(client.VersionApi(kube).get_code(_preload_content=False))  # GET /version/
        assert (answer["major"], answer["minor"], answer["gitVersion"]) == ("1", "27", "v1.27.0")

    def test_status_is_dropped_on_create_and_written_as_a_controller_does(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "team-a"},
            "spec": {"ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
        }
        (created,) = api.seed(service)
        assert "ingress" not in (created.get("status") or {}).get("loadBalancer", {})
        written = api.set_status("services", "web", "team-a", service["status"])
        assert written["status"] == service["status"]
        assert written["spec"]["ports"][0]["port"] == 80


class TestThrottling:
    def test_a_429_says_when_to_try_again_as_priority_and_fairness_does(
        self, api: LocalApiServer, tmp_path: Path
    ) -> None:
        api.add_fault(Fault(verb="get", status=429, reason="TooManyRequests", retry_after_s=3))
        # egress-guard's client: urllib3's own retries off (they would wait out Retry-After)
        kube = api_client("kubeconfig", kubeconfig=str(api.kubeconfig(tmp_path / "config")))
        core = client.CoreV1Api(kube)
        with pytest.raises(client.ApiException) as caught:
            core.read_namespace("team-a")
        assert caught.value.status == 429
        assert caught.value.headers["Retry-After"] == "3"
        assert json.loads(caught.value.body)["details"] == {"retryAfterSeconds": 3}
        answer = core.read_namespace("team-a", _preload_content=False)
        assert "Retry-After" not in answer.headers  # only the faulted answer carries it

    def test_counts_the_most_writes_answered_at_once(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        api.add_fault(Fault(verb="create", delay_s=0.3, times=None))
        net = client.NetworkingV1Api(kube)

        def create(index: int) -> None:
            body = {**NETPOL, "metadata": {"name": f"p{index}"}}
            net.create_namespaced_network_policy("team-a", body, _preload_content=False)

        threads = [threading.Thread(target=create, args=(index,)) for index in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert api.peak_writes_in_flight == 3
        api.reset_calls()
        assert api.peak_writes_in_flight == 0


class TestPatches:
    def webhook_configuration(self) -> dict[str, Any]:
        hook = {
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"service": {"name": "eg", "namespace": "egress-guard"}},
        }
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "egress-guard"},
            "webhooks": [{**hook, "name": "a.example.com"}, {**hook, "name": "b.example.com"}],
        }

    def test_strategic_merge_patches_webhooks_by_name(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        api.seed(self.webhook_configuration())
        admission = client.AdmissionregistrationV1Api(kube)
        patched = raw(
            admission.patch_validating_webhook_configuration(
                "egress-guard",
                {"webhooks": [{"name": "b.example.com", "clientConfig": {"caBundle": "Q0E="}}]},
                _preload_content=False,
            )
        )
        first, second = patched["webhooks"]
        assert "caBundle" not in first["clientConfig"]
        assert second["clientConfig"] == {
            "service": {"name": "eg", "namespace": "egress-guard"},
            "caBundle": "Q0E=",
        }
        assert patched["metadata"]["generation"] == 2

    def test_json_patch_with_a_stale_resource_version_is_a_conflict(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        (stored,) = api.seed(self.webhook_configuration())
        admission = client.AdmissionregistrationV1Api(kube)
        operations = [
            {
                "op": "replace",
                "path": "/metadata/resourceVersion",
                "value": stored["metadata"]["resourceVersion"],
            },
            {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "Q0E="},
        ]
        admission.patch_validating_webhook_configuration("egress-guard", operations)
        status, body = error_of(
            lambda: admission.patch_validating_webhook_configuration("egress-guard", operations)
        )
        assert (status, body["reason"]) == (409, "Conflict")
        failing_test = [{"op": "test", "path": "/metadata/name", "value": "other"}]
        status, body = error_of(
            lambda: admission.patch_validating_webhook_configuration("egress-guard", failing_test)
        )
        assert status == 422


class TestWatch:
    def test_streams_changes_after_a_resource_version(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        core = client.CoreV1Api(kube)
        listing = raw(core.list_namespace(_preload_content=False))
        since = listing["metadata"]["resourceVersion"]

        def change_later() -> None:
            time.sleep(0.2)
            api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "late"}})

        threading.Thread(target=change_later, daemon=True).start()
        response = core.list_namespace(
            watch=True, resource_version=since, timeout_seconds=1, _preload_content=False
        )
        lines = [json.loads(line) for line in response.read().splitlines() if line]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "late")]


class TestFaults:
    def test_down_is_connection_refused_and_up_serves_the_same_objects(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        core = client.CoreV1Api(kube)
        core.read_namespace("team-a")
        api.go_down()
        with pytest.raises(urllib3.exceptions.HTTPError, match="refused"):
            core.read_namespace("team-a", _request_timeout=1)
        api.come_up()
        assert core.read_namespace("team-a").metadata.name == "team-a"

    def test_forced_errors_and_delays_match_verb_and_resource(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        core = client.CoreV1Api(kube)
        api.add_fault(Fault(verb="get", resource="namespaces", status=503, reason="Unavailable"))
        status, body = error_of(lambda: core.read_namespace("team-a"))
        assert (status, body["reason"]) == (503, "Unavailable")
        assert core.read_namespace("team-a").metadata.name == "team-a"  # times=1: used up
        api.add_fault(Fault(verb="get", delay_s=0.3))
        started = time.monotonic()
        core.read_namespace("team-a")
        assert time.monotonic() - started >= 0.3

    def test_counts_calls_by_verb_and_resource(
        self, kube: client.ApiClient, api: LocalApiServer
    ) -> None:
        core = client.CoreV1Api(kube)
        core.read_namespace("team-a")
        core.list_namespace()
        error_of(lambda: core.read_namespace("ghost"))
        assert api.counts() == {("get", "namespaces"): 2, ("list", "namespaces"): 1}
        assert api.count("get") == 2
        assert api.count(writes=True) == 0
        assert [call.status for call in api.calls] == [200, 200, 404]


def test_unknown_tokens_are_unauthorized_and_the_authorizer_decides(tmp_path: Path) -> None:
    def only_reads(call: Call) -> bool:
        return call.verb in ("get", "list")

    with LocalApiServer(
        users={"t-reader": "reader"}, authorizer=only_reads, max_lifetime_s=30
    ) as api:
        api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
        reader = config.new_client_from_config(str(api.kubeconfig(tmp_path / "r", "t-reader")))
        stranger = config.new_client_from_config(str(api.kubeconfig(tmp_path / "s", "t-other")))
        assert client.CoreV1Api(reader).read_namespace("a").metadata.name == "a"
        status, body = error_of(
            lambda: client.CoreV1Api(reader).create_namespace({"metadata": {"name": "b"}})
        )
        assert (status, body["reason"]) == (403, "Forbidden")
        assert 'User "reader" cannot create resource "namespaces"' in body["message"]
        status, _ = error_of(lambda: client.CoreV1Api(stranger).read_namespace("a"))
        assert status == 401
