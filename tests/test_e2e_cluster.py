"""End to end with a cluster: the real `egress-guard serve` (gunicorn over TLS) with
`--cluster kubeconfig`, its kubeconfig pointing at the local API server."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from builders import PROFILE, ns_labels, review_document, workload
from local_apiserver import LocalApiServer
from running_server import RunningServer, running_server

from webhook.config.policy_file import load_policy
from webhook.core.network_policies import DEFAULT_DENY_NAME, render_default_deny, render_profile

pytestmark = pytest.mark.e2e

STRIPE = "egress-guard-profile-stripe"


@dataclass
class Served:
    api: LocalApiServer
    server: RunningServer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("serve-cluster")
    with LocalApiServer(max_lifetime_s=240) as api:
        for name, labels in (
            ("payments", ns_labels("enforce")),
            ("dry", ns_labels("enforce")),
            ("outage", ns_labels("enforce")),
        ):
            api.seed(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels},
                }
            )
        kubeconfig = api.kubeconfig(workdir / "kubeconfig", "egress-guard-sa")
        with running_server(
            workdir, "--cluster", "kubeconfig", env={"KUBECONFIG": str(kubeconfig)}
        ) as server:
            wait_until_ready(server)
            yield Served(api, server)


def readiness(server: RunningServer) -> tuple[int, str]:
    with contextlib.closing(server.connection()) as conn:
        conn.request("GET", "/readyz")
        reply = conn.getresponse()
        return reply.status, reply.read().decode()


def wait_until_ready(server: RunningServer, timeout_s: float = 10.0) -> None:
    """Ready once the namespace cache is filled and the generated policies are listed."""
    deadline = time.monotonic() + timeout_s
    while (found := readiness(server))[0] != 200:
        assert time.monotonic() < deadline, f"never ready: {found}\n{server.log()}"
        time.sleep(0.05)


def deployment_review(namespace: str, uid: str, **extra: object) -> dict[str, object]:
    obj = workload("Deployment", {"app": "api", PROFILE: "stripe"}, name="api")
    return review_document(obj, namespace=namespace, uid=uid, **extra)


def test_a_deployment_create_has_both_policies_in_place_before_the_answer(
    served: Served,
) -> None:
    policy = load_policy(None)
    assert served.api.objects("networkpolicies", "payments") == []
    status, body = served.server.send("/validate", deployment_review("payments", "e2e-create"))
    names_when_answered = [
        obj["metadata"]["name"] for obj in served.api.objects("networkpolicies", "payments")
    ]
    assert status == 200
    assert body["response"]["allowed"] is True
    assert sorted(names_when_answered) == [DEFAULT_DENY_NAME, STRIPE]
    deny = served.api.get("networkpolicies", DEFAULT_DENY_NAME, "payments")
    stripe = served.api.get("networkpolicies", STRIPE, "payments")
    assert deny is not None and stripe is not None
    assert deny["spec"] == render_default_deny("payments", policy)["spec"]
    assert stripe["spec"] == render_profile("payments", "stripe", policy)["spec"]
    creates = [c for c in served.api.calls if c.verb == "create" and c.namespace == "payments"]
    assert {c.user for c in creates} == {"egress-guard-sa"}

    served.api.reset_calls()
    for index in range(20):
        status, body = served.server.send(
            "/validate", deployment_review("payments", f"e2e-again-{index}")
        )
        assert body["response"]["allowed"] is True
    assert [c for c in served.api.calls if c.verb != "watch"] == []


def test_a_server_side_dry_run_writes_nothing(served: Served) -> None:
    served.api.reset_calls()
    status, body = served.server.send("/validate", deployment_review("dry", "e2e-dry", dryRun=True))
    assert status == 200
    assert body["response"]["allowed"] is True
    assert any("dry run" in warning for warning in body["response"]["warnings"])
    assert served.api.count(writes=True) == 0
    assert served.api.objects("networkpolicies", "dry") == []


def test_with_the_api_down_an_enforced_create_is_refused_with_the_reason(
    served: Served,
) -> None:
    status, body = served.server.send("/validate", deployment_review("outage", "e2e-warm"))
    assert body["response"]["allowed"] is True  # namespace known, policies made
    served.api.go_down()
    try:
        obj = workload("Deployment", {PROFILE: "internal"}, name="ledger")
        started = time.monotonic()
        status, body = served.server.send(
            "/validate", review_document(obj, namespace="outage", uid="e2e-down")
        )
        elapsed = time.monotonic() - started
    finally:
        served.api.come_up()
    assert status == 200
    response = body["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 503
    assert "egress-guard-profile-internal" in response["status"]["message"]
    assert "refused the connection" in response["status"]["message"]
    assert elapsed < 3.0


CRDS = Path(__file__).resolve().parents[2] / "shared/corpus/crds"


def test_the_served_webhook_ensures_the_backends_objects_and_says_what_is_missing(
    tmp_path: Path,
) -> None:
    """The real server with `backends: [networkpolicy, cilium, istio]`, Cilium's CRD installed
    and Istio's not: /readyz stays ready and says so; an enforcing namespace's workload is
    refused naming the missing CRD; once Istio's CRDs are installed it is admitted with every
    object in place before the answer."""
    if not CRDS.exists():
        pytest.skip("../shared/corpus is not here")
    example = Path(__file__).resolve().parents[1] / "webhook/data/policy.example.yaml"
    config = tmp_path / "policy.yaml"
    config.write_text(
        example.read_text().replace(
            "backends: [networkpolicy]", "backends: [networkpolicy, cilium, istio]"
        )
    )
    with LocalApiServer(max_lifetime_s=120) as api:
        api.install_crds(CRDS / "cilium-ciliumnetworkpolicies.yaml")
        api.seed(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "payments", "labels": ns_labels("enforce")},
            }
        )
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig", "egress-guard-sa")
        with running_server(
            tmp_path,
            "--cluster",
            "kubeconfig",
            "--config",
            str(config),
            env={"KUBECONFIG": str(kubeconfig)},
        ) as server:
            wait_until_ready(server)
            status, text = readiness(server)
            assert status == 200
            assert "serviceentries.networking.istio.io" in text
            assert "sidecars.networking.istio.io" in text
            _, body = server.send("/validate", deployment_review("payments", "e2e-no-istio"))
            response = body["response"]
            assert response["allowed"] is False
            assert (
                "the CRD serviceentries.networking.istio.io is not installed"
                in (response["status"]["message"])
            )
            api.install_crds(CRDS / "istio-serviceentry-sidecar.yaml")
            _, body = server.send("/validate", deployment_review("payments", "e2e-istio"))
            assert body["response"]["allowed"] is True, body
            for plural in ("networkpolicies", "ciliumnetworkpolicies", "sidecars"):
                names = [o["metadata"]["name"] for o in api.objects(plural, "payments")]
                assert STRIPE in names, plural
