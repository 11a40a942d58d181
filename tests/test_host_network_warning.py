"""The hostNetwork finding, said as a warning, carries egress-guard's prefix like every other:
in a warn namespace (admitted, what enforce would refuse) and on an UPDATE of an object that
already used hostNetwork in an enforcing namespace (admitted so it can be scaled or fixed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from webhook.cli.main import main

POLICY = """\
profiles:
  none: {}
namespaces:
  previewed: {mode: warn, inject: networkpolicy}
  enforced: {mode: enforce, inject: networkpolicy}
"""
HOST_NETWORK = "uses hostNetwork: NetworkPolicies do not restrict its egress"


def deployment(namespace: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "agent", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": "agent", "egress-guard.io/profile": "none"}},
                "spec": {"hostNetwork": True, "containers": [{"name": "a", "image": "x"}]},
            },
        },
    }


def check(tmp_path: Path, *args: str) -> str:
    (tmp_path / "policy.yaml").write_text(POLICY)
    result = CliRunner().invoke(main, ["check", "--config", str(tmp_path / "policy.yaml"), *args])
    return result.stdout


def test_warn_mode_says_it_with_the_warn_prefix(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(deployment("previewed")))
    (item,) = json.loads(check(tmp_path, "-o", "json", "-f", str(tmp_path / "agent.yaml")))["items"]
    assert item["verdict"] == "warned"
    said = [w for w in item["warnings"] if HOST_NETWORK in w]
    assert said == [f'egress-guard (warn): Deployment "agent" {HOST_NETWORK}: drop hostNetwork']


def test_an_update_that_already_used_host_network_says_it_with_the_prefix(
    tmp_path: Path,
) -> None:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "1",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "operation": "UPDATE",
            "namespace": "enforced",
            "name": "agent",
            "object": deployment("enforced", replicas=3),
            "oldObject": deployment("enforced"),
            "userInfo": {"username": "someone"},
        },
    }
    (tmp_path / "review.json").write_text(json.dumps(review))
    response = json.loads(check(tmp_path, "--review", str(tmp_path / "review.json")))["response"]
    assert response["allowed"] is True
    assert (
        f'egress-guard: Deployment "agent" {HOST_NETWORK}: drop hostNetwork' in response["warnings"]
    )
    assert all(w.startswith("egress-guard: ") for w in response["warnings"])
