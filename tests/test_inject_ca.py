"""`egress-guard certs inject-ca` against the local API server, through the real client."""

from __future__ import annotations

import base64
import copy
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from local_apiserver import Fault, LocalApiServer

from webhook.cli.main import main
from webhook.cluster.client import api_client
from webhook.cluster.webhook_configs import WebhookConfigError, inject_ca_bundle
from webhook.config.policy_file import load_policy
from webhook.core.kube_names import service_dns_names
from webhook.deploy.objects import (
    DeployOptions,
    mutating_webhook_configuration,
    validating_webhook_configuration,
)
from webhook.serving.certs import RollStep, ensure_certs, roll_ca

KINDS = {
    "validatingwebhookconfigurations": "ValidatingWebhookConfiguration",
    "mutatingwebhookconfigurations": "MutatingWebhookConfiguration",
}


@pytest.fixture
def configured(local_api: LocalApiServer) -> dict[str, Any]:
    """The webhook configurations as deploy/ creates them (no caBundle yet), in the API."""
    policy, options = load_policy(None), DeployOptions()
    seeded = {
        "validatingwebhookconfigurations": validating_webhook_configuration(policy, options),
        "mutatingwebhookconfigurations": mutating_webhook_configuration(policy, options),
    }
    local_api.seed(*copy.deepcopy(list(seeded.values())))
    return seeded


@pytest.fixture
def cert_dir(tmp_path: Path) -> Path:
    out = tmp_path / "certs"
    ensure_certs(out, service_dns_names("egress-guard", "egress-guard"))
    return out


def inject(cert_dir: Path, kubeconfig: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        ["certs", "inject-ca", "--out", str(cert_dir), "--kubeconfig", str(kubeconfig), *args],
    )


def bundles(api: LocalApiServer) -> dict[str, str | None]:
    return {
        f"{resource}/{hook['name']}": hook["clientConfig"].get("caBundle")
        for resource in KINDS
        for config in api.objects(resource)
        for hook in config["webhooks"]
    }


def test_every_webhook_gets_the_bundle_and_nothing_else_changes(
    local_api: LocalApiServer, kubeconfig: Path, cert_dir: Path, configured: dict[str, Any]
) -> None:
    result = inject(cert_dir, kubeconfig)
    assert result.exit_code == 0, result.output
    expected = base64.b64encode((cert_dir / "ca-bundle.crt").read_bytes()).decode()
    found = bundles(local_api)
    webhooks = sum(len(config["webhooks"]) for config in configured.values())
    # workload enforce and preview, namespace, NetworkPolicy enforce and preview validation;
    # pod mutation
    assert webhooks == 6
    assert len(found) == webhooks and set(found.values()) == {expected}
    for resource, seeded in configured.items():
        stored = local_api.objects(resource)[0]
        for hook in stored["webhooks"]:
            hook["clientConfig"].pop("caBundle")
        assert stored["webhooks"] == seeded["webhooks"]
    assert "ValidatingWebhookConfiguration/egress-guard: caBundle updated" in result.output


def test_a_second_run_changes_nothing(
    local_api: LocalApiServer, kubeconfig: Path, cert_dir: Path, configured: dict[str, Any]
) -> None:
    assert inject(cert_dir, kubeconfig).exit_code == 0
    local_api.reset_calls()
    result = inject(cert_dir, kubeconfig)
    assert result.exit_code == 0
    assert "already current" in result.output
    assert local_api.count(writes=True) == 0


def test_a_concurrent_change_is_retried_on_the_new_version(
    local_api: LocalApiServer, kubeconfig: Path, cert_dir: Path, configured: dict[str, Any]
) -> None:
    local_api.add_fault(
        Fault(verb="patch", resource="validatingwebhookconfigurations", status=409,
              reason="Conflict", times=1)
    )  # fmt: skip
    result = inject(cert_dir, kubeconfig)
    assert result.exit_code == 0, result.output
    assert local_api.count("patch", "validatingwebhookconfigurations") == 2
    assert None not in bundles(local_api).values()


def test_during_a_ca_roll_the_bundle_trusts_both_cas(
    local_api: LocalApiServer, kubeconfig: Path, cert_dir: Path, configured: dict[str, Any]
) -> None:
    roll_ca(cert_dir, RollStep.BEGIN)
    assert inject(cert_dir, kubeconfig).exit_code == 0
    for value in bundles(local_api).values():
        assert value is not None
        assert len(x509.load_pem_x509_certificates(base64.b64decode(value))) == 2
    roll_ca(cert_dir, RollStep.PROMOTE)
    roll_ca(cert_dir, RollStep.FINISH)
    assert inject(cert_dir, kubeconfig).exit_code == 0
    for value in bundles(local_api).values():
        assert value is not None
        certs = x509.load_pem_x509_certificates(base64.b64decode(value))
        assert certs == [x509.load_pem_x509_certificate((cert_dir / "ca.crt").read_bytes())]


def test_dry_run_writes_nothing(
    local_api: LocalApiServer, kubeconfig: Path, cert_dir: Path, configured: dict[str, Any]
) -> None:
    result = inject(cert_dir, kubeconfig, "--dry-run")
    assert result.exit_code == 0 and "(dry run)" in result.output
    assert set(bundles(local_api).values()) == {None}
    assert all(call.dry_run for call in local_api.calls if call.is_write)


def test_a_missing_configuration_or_a_refusal_is_a_clear_error(
    local_api: LocalApiServer, kubeconfig: Path, cert_dir: Path, configured: dict[str, Any]
) -> None:
    result = inject(cert_dir, kubeconfig, "--name", "egress-gaurd")
    assert result.exit_code == 2
    assert "no Validating- or MutatingWebhookConfiguration named 'egress-gaurd'" in result.output
    local_api.add_fault(Fault(verb="get", status=403, reason="Forbidden", times=None))
    result = inject(cert_dir, kubeconfig)
    assert result.exit_code == 2
    assert "403" in result.output and "allowed to get and patch" in result.output


def test_an_unreachable_api_server_is_a_clear_error(
    local_api: LocalApiServer, kubeconfig: Path, cert_dir: Path
) -> None:
    local_api.go_down()
    result = inject(cert_dir, kubeconfig)
    assert result.exit_code == 2
    assert "not reachable" in result.output


def test_an_answer_that_is_not_json_is_a_clear_error(
    local_api: LocalApiServer, kubeconfig: Path, cert_dir: Path, configured: dict[str, Any]
) -> None:
    """A proxy's error page in front of the API server: an error naming it, not a traceback."""
    local_api.add_fault(Fault(verb="get", raw=b"<html>502 Bad Gateway</html>", times=None))
    result = inject(cert_dir, kubeconfig)
    assert result.exit_code == 2, result.output
    assert "not JSON" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_every_call_is_bounded_by_the_budget(
    local_api: LocalApiServer, cert_dir: Path, configured: dict[str, Any], kubeconfig: Path
) -> None:
    local_api.add_fault(Fault(verb="get", delay_s=5.0, times=None))
    client = api_client("kubeconfig", kubeconfig=str(kubeconfig))
    started = time.monotonic()
    try:
        with pytest.raises(WebhookConfigError, match="did not answer in time"):
            inject_ca_bundle(b"pem", ["egress-guard"], client=client, budget_s=0.5)
    finally:
        client.close()
        local_api.clear_faults()
    assert time.monotonic() - started < 2.0


def test_a_bundle_that_is_not_a_ca_is_refused_before_any_call(
    local_api: LocalApiServer, kubeconfig: Path, cert_dir: Path
) -> None:
    result = inject(cert_dir, kubeconfig, "--bundle", str(cert_dir / "tls.crt"))
    assert result.exit_code == 2 and "not a CA certificate" in result.output
    assert local_api.calls == []
