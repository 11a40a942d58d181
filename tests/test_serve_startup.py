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
    monkeypatch.setattr("webhook.serving.server.run", lambda *args, **_: calls.append(args))
    monkeypatch.setattr("webhook.cli.commands.serve._check_port_free", lambda _host, _port: None)

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


def test_credentials_that_cannot_be_used_fail_once_before_any_worker(
    tmp_path: Path, started: list[Any], cert_dir: Path
) -> None:
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--cluster",
            "kubeconfig",
            "--kubeconfig",
            str(tmp_path / "missing"),
            "--cert-dir",
            str(cert_dir),
        ],
    )
    line = one_line_error(result)
    assert "kubeconfig" in line and "--cluster none" in line
    assert started == []


def test_serve_takes_a_kubeconfig_and_a_context(local_api: Any, kubeconfig: Path) -> None:
    from webhook.config.settings import ServeSettings
    from webhook.serving.compose import build_components

    components = build_components(ServeSettings(kubeconfig=kubeconfig))
    try:
        assert components.cluster == "kubeconfig"
        assert components.namespaces.labels("egress-guard") is not None  # read from local_api
    finally:
        components.close()


def test_a_port_in_use_fails_at_once(tmp_path: Path, cert_dir: Path) -> None:
    import socket
    import time

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started_at = time.monotonic()
        result = serve("--port", str(port), "--cert-dir", str(cert_dir))
        assert time.monotonic() - started_at < 3  # not gunicorn's five retries
    line = one_line_error(result)
    assert f"cannot listen on 127.0.0.1:{port}" in line


def test_serving_is_announced_only_once_listening(cert_dir: Path, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    command = [sys.executable, "-m", "webhook", "serve", "--cluster", "none"]
    command += ["--port", str(port), "--cert-dir", str(cert_dir), "--workers", "1"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "serving https://" in line:
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    pass  # already bound when it said so
                break
        else:
            raise AssertionError("serve never said it was serving")
    finally:
        process.terminate()
        process.wait(timeout=20)
