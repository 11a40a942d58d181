"""`serve` before it serves: a certificate directory it cannot use, a key it cannot read or parse,
and the file that tells the image's HEALTHCHECK where it listens. Each fault is one line and exit
code 2, before gunicorn starts: never a traceback, never a server that is up but fails every TLS
handshake."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from running_server import running_server

from webhook.cli.main import main
from webhook.serving import healthcheck
from webhook.serving.certs import CertFiles, ensure_certs


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What `serve` handed gunicorn, instead of starting it."""
    calls: list[Any] = []
    monkeypatch.setattr("webhook.serving.server.run", lambda *args: calls.append(args))

    @contextlib.contextmanager
    def no_metrics_dir() -> Iterator[Path]:
        yield Path("unused")

    monkeypatch.setattr("webhook.serving.metrics_dir.multiprocess_dir", no_metrics_dir)
    for name in ("HOST", "PORT", "CERT_DIR", "HEALTHCHECK_FILE", "CONFIG"):
        monkeypatch.delenv(f"EGRESS_GUARD_{name}", raising=False)
    return calls


def serve(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["serve", "--cluster", "none", *args], env=env)


def one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # not a traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture
def cert_dir(tmp_path: Path) -> Path:
    out = tmp_path / "tls"
    ensure_certs(out, ["localhost"], ["127.0.0.1"])
    return out


def test_a_cert_dir_that_cannot_be_created_is_one_line(tmp_path: Path, started: list[Any]) -> None:
    (tmp_path / "file").write_text("not a directory")
    error = one_line_error(serve("--cert-dir", str(tmp_path / "file" / "tls")))
    assert f"no certificate in {tmp_path}/file/tls/ and none can be generated there" in error
    assert "is a file, not a directory" in error and "EGRESS_GUARD_CERT_DIR" in error
    assert not started


def test_a_cert_dir_without_certificates_gets_them_and_serves(
    tmp_path: Path, started: list[Any]
) -> None:
    result = serve("--cert-dir", str(tmp_path / "new" / "tls"))
    assert result.exit_code == 0, result.output
    assert f"trust {tmp_path}/new/tls/ca.crt" in result.output
    assert len(started) == 1


def test_an_unreadable_key_refuses_to_start(
    cert_dir: Path, started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root-owned 0600 key (`certs generate` run as root) read by the server's uid 65532."""
    key = CertFiles(cert_dir).tls_key
    key.chmod(0)
    if os.geteuid() == 0:  # root reads any file: refuse this one as the kernel would refuse 65532
        read_bytes = Path.read_bytes

        def refuse(path: Path) -> bytes:
            if path == key:
                raise PermissionError(13, "Permission denied", str(path))
            return read_bytes(path)

        monkeypatch.setattr(Path, "read_bytes", refuse)
    error = one_line_error(serve("--cert-dir", str(cert_dir)))
    assert f"cannot read {key}: permission denied" in error
    assert "mode 0000" in error and f"runs as uid {os.geteuid()}" in error
    assert not started


def test_a_key_of_another_certificate_refuses_to_start(
    cert_dir: Path, tmp_path: Path, started: list[Any]
) -> None:
    other = tmp_path / "other"
    ensure_certs(other, ["localhost"])
    shutil.copy(CertFiles(other).tls_key, CertFiles(cert_dir).tls_key)
    error = one_line_error(serve("--cert-dir", str(cert_dir)))
    assert f"{cert_dir}/tls.key is not the key of {cert_dir}/tls.crt" in error
    assert not started


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("tls.crt", "-----BEGIN CERTIFICATE-----\nbroken\n", "tls.crt holds no PEM certificate"),
        ("tls.key", "", "tls.key holds no PEM private key"),
    ],
)
def test_a_file_that_does_not_parse_refuses_to_start(
    cert_dir: Path, started: list[Any], name: str, content: str, expected: str
) -> None:
    (cert_dir / name).write_text(content)
    assert expected in one_line_error(serve("--cert-dir", str(cert_dir)))
    assert not started


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "https://127.0.0.1:9443/healthz"),
        ("::", "https://[::1]:9443/healthz"),
        ("10.1.2.3", "https://10.1.2.3:9443/healthz"),
        ("fd00::7", "https://[fd00::7]:9443/healthz"),
        ("127.0.0.1", "https://127.0.0.1:9443/healthz"),
    ],
)
def test_the_health_check_asks_where_the_server_listens(host: str, url: str) -> None:
    assert healthcheck.healthz_url(host, 9443) == url


def test_serve_tells_the_health_check_its_command_line_address(
    cert_dir: Path, tmp_path: Path, started: list[Any]
) -> None:
    """The image sets EGRESS_GUARD_HOST and _PORT; `serve --port` and `--host` win over them."""
    written = tmp_path / "run" / "healthz-url"
    env = {
        "EGRESS_GUARD_HEALTHCHECK_FILE": str(written),
        "EGRESS_GUARD_HOST": "0.0.0.0",
        "EGRESS_GUARD_PORT": "8443",
    }
    result = serve("--cert-dir", str(cert_dir), "--host", "::", "--port", "9443", env=env)
    assert result.exit_code == 0, result.output
    assert written.read_text() == "https://[::1]:9443/healthz\n"
    assert healthcheck.target_url(env) == "https://[::1]:9443/healthz"
    assert healthcheck.target_url({"EGRESS_GUARD_PORT": "7443"}) == (
        "https://127.0.0.1:7443/healthz"
    )


@pytest.mark.e2e
def test_the_health_check_passes_against_a_running_server_and_fails_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    written = tmp_path / "healthz-url"
    monkeypatch.setenv("EGRESS_GUARD_HEALTHCHECK_FILE", str(written))
    with running_server(tmp_path, env={"EGRESS_GUARD_HEALTHCHECK_FILE": str(written)}) as server:
        assert written.read_text() == f"https://127.0.0.1:{server.port}/healthz\n"
        assert healthcheck.main() == 0
    assert healthcheck.main() == 1
    assert f"unhealthy: https://127.0.0.1:{server.port}/healthz" in capsys.readouterr().err
