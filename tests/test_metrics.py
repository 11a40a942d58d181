"""Prometheus metrics: what each review counts, and totals that add up across gunicorn workers."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import PROFILE, pod, review_document, workload
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from running_server import RunningServer, running_server

from webhook.admission.controller import AdmissionController
from webhook.cluster.static import ReportingNetworkPolicyApplier, StaticNamespaceSource
from webhook.config.policy_file import PolicyStore
from webhook.http.app import create_app
from webhook.serving.metrics_dir import ENV, multiprocess_dir

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(found: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in found.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def client_with(network_policies: Any) -> FlaskClient:
    """The app over the example policy, its namespaces from the policy's table."""
    policies = PolicyStore(None)
    controller = AdmissionController(
        policies=policies,
        namespaces=StaticNamespaceSource(policies),
        network_policies=network_policies,
    )
    return create_app(controller).test_client()


@pytest.fixture
def client() -> FlaskClient:
    return client_with(ReportingNetworkPolicyApplier())


def post(client: FlaskClient, path: str, document: Any) -> Any:
    reply = client.post(path, data=orjson.dumps(document), content_type="application/json")
    assert reply.status_code == 200
    return reply.get_json()


def scrape(client: FlaskClient) -> Samples:
    reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.content_type.startswith("text/plain; version=")
    return samples(reply.get_data(as_text=True))


def test_each_review_is_counted_by_operation_kind_verdict_and_mode(client: FlaskClient) -> None:
    post(client, "/validate", review_document(workload("Deployment"), namespace="payments"))
    post(client, "/validate", review_document(workload("Job"), namespace="staging"))
    post(client, "/validate", review_document(pod({PROFILE: "none"}), namespace="sandbox"))
    post(client, "/validate", review_document(workload("CronJob"), namespace="unlisted"))
    post(client, "/validate", review_document(workload("Deployment"), namespace="kube-system"))
    found = scrape(client)
    reviews = "egress_guard_reviews_total"
    expected = [
        ({"kind": "Deployment", "verdict": "denied", "mode": "enforce"}, 1),
        ({"kind": "Job", "verdict": "warned", "mode": "warn"}, 1),
        ({"kind": "Pod", "verdict": "allowed", "mode": "audit"}, 1),
        ({"kind": "CronJob", "verdict": "allowed", "mode": "unmanaged"}, 1),
        ({"kind": "Deployment", "verdict": "allowed", "mode": "unmanaged"}, 1),
    ]
    for labels, count in expected:
        assert total(found, reviews, action="validate", operation="CREATE", **labels) == count
    assert total(found, reviews) == 5
    assert total(found, "egress_guard_review_duration_seconds_count", action="validate") == 5
    assert total(found, "egress_guard_review_duration_seconds_sum", action="validate") > 0


def test_kinds_outside_the_webhook_rules_share_one_label(client: FlaskClient) -> None:
    rollout = workload("Rollout", {PROFILE: "none"})
    post(client, "/validate", review_document(rollout, namespace="payments"))
    found = scrape(client)
    assert total(found, "egress_guard_reviews_total", kind="other") == 1
    assert total(found, "egress_guard_reviews_total", kind="Rollout") == 0


def test_made_up_operations_share_one_label(client: FlaskClient) -> None:
    """A crafted review's operation never becomes a series of its own."""
    for operation in ("PATCH", "X" * 40, "CREATE"):
        document = review_document(workload("Deployment"), namespace="payments")
        document["request"]["operation"] = operation
        post(client, "/validate", document)
    found = scrape(client)
    operations = {
        dict(labels)["operation"]
        for (name, labels), value in found.items()
        if name == "egress_guard_reviews_total" and value
    }
    assert operations == {"other", "CREATE"}


def test_a_kind_is_known_by_its_group_too(client: FlaskClient) -> None:
    volcano = {
        "apiVersion": "batch.volcano.sh/v1alpha1",
        "kind": "Job",
        "metadata": {"name": "train"},
        "spec": {"tasks": []},
    }
    post(client, "/validate", review_document(volcano, namespace="payments"))
    post(client, "/validate", review_document(workload("Job"), namespace="payments"))
    found = scrape(client)
    assert total(found, "egress_guard_reviews_total", kind="other") == 1
    assert total(found, "egress_guard_reviews_total", kind="Job") == 1


def test_injections_policies_and_errors_are_counted(client: FlaskClient) -> None:
    post(client, "/mutate", review_document(pod({PROFILE: "none"}), namespace="legacy"))
    post(client, "/mutate", review_document(pod({PROFILE: "none"}), namespace="payments"))
    post(client, "/validate", review_document(pod({PROFILE: "stripe"}), namespace="payments"))
    assert client.post("/validate", data=b"{", content_type="application/json").status_code == 400
    assert client.post("/validate", data=b"{}", content_type="text/plain").status_code == 415
    too_large = b" " * (7 * 1024 * 1024)  # over the default 6 MiB limit
    assert (
        client.post("/validate", data=too_large, content_type="application/json").status_code == 413
    )
    found = scrape(client)
    assert total(found, "egress_guard_proxy_injections_total") == 1  # legacy injects the proxy
    # no cluster: the default-deny and the stripe policy are reported, not applied
    assert total(found, "egress_guard_network_policies_ensured_total", result="reported") == 2
    assert total(found, "egress_guard_errors_total", reason="invalid") == 3
    assert total(found, "egress_guard_errors_total", reason="internal") == 0


def test_the_metrics_directory_is_emptied_at_start_or_made_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_12345.db").write_bytes(b"stale")
    (given / "keep.txt").write_text("not ours")
    monkeypatch.setenv(ENV, str(given))
    with multiprocess_dir() as directory:
        assert directory == given
        assert not (given / "counter_12345.db").exists()
    assert (given / "keep.txt").exists()

    monkeypatch.delenv(ENV)
    with multiprocess_dir() as directory:
        assert os.environ[ENV] == str(directory) and directory.is_dir()
    assert not directory.exists()
    assert ENV not in os.environ


@contextlib.contextmanager
def two_worker_server(tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    metrics_dir = tmp_path / "metrics"
    with running_server(tmp_path, workers=2, env={ENV: str(metrics_dir)}) as server:
        yield server, metrics_dir


def worker_files(metrics_dir: Path) -> set[str]:
    return {p.name for p in metrics_dir.glob("counter_*.db")}


@pytest.mark.e2e
def test_counters_add_up_across_two_workers(tmp_path: Path) -> None:
    sent = 0
    sent_lock = threading.Lock()

    def send_batch(server: RunningServer, count: int) -> None:
        nonlocal sent
        for index in range(count):
            document = review_document(workload("Deployment"), uid=f"m-{index}")
            status, body = server.send("/validate", document)  # a fresh connection each time
            assert status == 200 and body["response"]["allowed"] is False
            with sent_lock:
                sent += 1

    with two_worker_server(tmp_path) as (server, metrics_dir):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            threads = [threading.Thread(target=send_batch, args=(server, 10)) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            if len(worker_files(metrics_dir)) >= 2 and sent >= 80:
                break
        # Both workers counted reviews, each in its own file...
        assert len(worker_files(metrics_dir)) >= 2, worker_files(metrics_dir)
        # ...and every scrape, whichever worker answers it, reports the sum of both.
        for _ in range(6):
            with contextlib.closing(server.connection()) as conn:
                conn.request("GET", "/metrics")
                reply = conn.getresponse()
                assert reply.status == 200
                found = samples(reply.read().decode())
            assert total(found, "egress_guard_reviews_total", kind="Deployment") == sent
            assert total(found, "egress_guard_review_duration_seconds_count") == sent


class FailingApplier:
    """Ensures nothing: the Kubernetes API does not answer."""

    def ensure(self, intent: Any) -> Any:
        from webhook.admission.ports import NetworkPoliciesNotEnsured

        raise NetworkPoliciesNotEnsured("the Kubernetes API did not answer in time")


def test_an_outage_is_counted_as_unavailable_never_as_a_policy_denial() -> None:
    client = client_with(FailingApplier())
    outage = post(
        client, "/validate", review_document(pod({PROFILE: "stripe"}), namespace="payments")
    )
    assert outage["response"]["allowed"] is False
    assert outage["response"]["status"]["code"] == 503
    assert outage["response"]["status"]["reason"] == "ServiceUnavailable"
    post(client, "/validate", review_document(workload("Deployment"), namespace="payments"))
    found = scrape(client)
    assert total(found, "egress_guard_reviews_total", verdict="unavailable") == 1
    assert total(found, "egress_guard_reviews_total", verdict="denied") == 1
    assert total(found, "egress_guard_errors_total", reason="unavailable") == 1
    assert total(found, "egress_guard_errors_total", reason="evaluation") == 0


def test_a_worker_leaving_does_not_remove_the_servers_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gunicorn worker is a fork of the server and unwinds the server's `with` blocks when it
    exits: the directory its siblings still use must stay until the server itself stops."""
    monkeypatch.delenv(ENV, raising=False)
    context = multiprocess_dir()
    directory = context.__enter__()
    child = os.fork()
    if child == 0:  # the worker: leave as a worker leaves, then report nothing else
        context.__exit__(None, None, None)
        os._exit(0)
    os.waitpid(child, 0)
    assert directory.is_dir(), "a worker's exit removed the server's directory"
    context.__exit__(None, None, None)
    assert not directory.exists()
