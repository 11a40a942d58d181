"""The pip settings `make image-test` hands the image build (tools/image_test/pip_settings.py):
this machine's index, hosts and certificate bundle, as build secrets, and nothing the build
cannot reach. No container engine is needed to run this."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.image_test.pip_settings import CERT_SECRET, build_secrets


def test_remote_indexes_and_the_bundle_pass_local_paths_are_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    secrets = build_secrets(
        {
            "index-url": "https://mirror.example/simple",
            "extra-index-url": "file:///opt/pypi/simple https://extra.example/simple",
            "find-links": "/opt/wheels",
            "trusted-host": "mirror.example",
            "cert": str(bundle),
            "constraint": "/etc/xdg/pip/constraints.txt",
            "disable-pip-version-check": "1",
        }
    )
    assert secrets.pip_conf.splitlines() == [
        "[global]",
        "index-url = https://mirror.example/simple",
        "extra-index-url = https://extra.example/simple",
        "trusted-host = mirror.example",
        f"cert = {CERT_SECRET}",
    ]
    assert secrets.cert == bundle
    assert "HTTPS_PROXY" in secrets.proxies
    assert set(secrets.left_out) == {
        "extra-index-url file:///opt/pypi/simple",
        "find-links /opt/wheels",
        "constraint /etc/xdg/pip/constraints.txt (the build has its own)",
    }
    args = secrets.docker_args(tmp_path)
    assert args[:2] == ["--secret", f"id=pip.conf,src={tmp_path / 'pip.conf'}"]
    assert args[2:4] == ["--secret", f"id=pip-cert,src={bundle}"]
    build_args = [args[i + 1] for i, arg in enumerate(args) if arg == "--build-arg"]
    assert "HTTPS_PROXY" in build_args  # by name: the value stays out of the command line


def test_without_settings_the_build_uses_pips_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    secrets = build_secrets({})
    assert secrets.pip_conf == "[global]\n"
    assert secrets.cert is None and not secrets.left_out
