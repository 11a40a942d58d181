"""End to end: the real `egress-guard serve` (gunicorn, TLS) spoken to as the API server does."""

from __future__ import annotations

import base64
import contextlib
import http.client
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from builders import PROFILE, apply_patch, pod, review_document, workload
from running_server import RunningServer, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("serve")) as running:
        yield running


def test_generates_a_ca_and_prints_where_it_is(server: RunningServer) -> None:
    assert server.ca_file.is_file()
    assert f"trust {server.ca_file}" in server.log()


def test_denies_a_deployment_without_the_label_over_https(server: RunningServer) -> None:
    status, body = server.send("/validate", review_document(workload("Deployment"), uid="e2e-1"))
    assert status == 200
    assert body["response"]["uid"] == "e2e-1"
    assert body["response"]["allowed"] is False
    assert PROFILE in body["response"]["status"]["message"]


def test_many_reviews_share_one_keep_alive_connection(server: RunningServer) -> None:
    conn = server.connection()
    server.post(conn, "/validate", review_document(pod({PROFILE: "none"})))
    first_socket = conn.sock
    assert first_socket is not None
    for index in range(50):
        document = review_document(pod({PROFILE: "none"}), uid=f"keep-{index}")
        status, body = server.post(conn, "/validate", document)
        assert status == 200
        assert body["response"]["uid"] == f"keep-{index}"
    assert conn.sock is first_socket  # the same TLS connection served every review
    conn.close()


def test_mutation_over_https_injects_the_proxy(server: RunningServer) -> None:
    obj = pod({PROFILE: "none"})
    status, body = server.send("/mutate", review_document(obj, namespace="legacy"))
    assert status == 200
    patched = apply_patch(obj, orjson.loads(base64.b64decode(body["response"]["patch"])))
    assert "HTTPS_PROXY" in {e["name"] for e in patched["spec"]["containers"][0]["env"]}


def test_bad_input_gets_a_4xx_and_the_connection_lives_on(server: RunningServer) -> None:
    conn = server.connection()
    conn.request("POST", "/validate", body=b"{oops", headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    assert reply.status == 400
    assert "not valid JSON" in orjson.loads(reply.read())["error"]
    status, _ = server.post(conn, "/validate", review_document(pod({PROFILE: "none"})))
    assert status == 200
    conn.close()


def test_a_chunked_body_is_refused_from_its_head(server: RunningServer) -> None:
    """The API server always sends Content-Length; a chunked body's end could only be found
    by reading it all, so it is refused (411) before any of it is read."""

    def chunks() -> Iterator[bytes]:
        piece = b" " * 65536
        for _ in range(120):  # 7.5 MiB, over the default 6 MiB limit
            yield piece

    conn = server.connection()
    try:
        conn.request(
            "POST",
            "/validate",
            body=chunks(),
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            encode_chunked=True,
        )
        status: int | None = conn.getresponse().status
    except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
        # The server answered 413 and closed while the client was still sending: TCP may deliver
        # that as a reset before the answer can be read. The server's log says which it was.
        status = None
    finally:
        conn.close()
    assert status in (411, None)

    def refused_in_log() -> bool:
        return any(
            '"request refused"' in line and '"status":411' in line
            for line in server.log().splitlines()
        )

    deadline = time.monotonic() + 10
    while not refused_in_log():
        assert time.monotonic() < deadline, "the server did not record refusing the body"
        time.sleep(0.05)
    assert server.send("/validate", review_document(pod({PROFILE: "none"})))[0] == 200


def test_tls_below_1_2_is_refused(server: RunningServer) -> None:
    context = server.tls_context()
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):  # let the client offer old protocols at all
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=5)
    with pytest.raises((ssl.SSLError, OSError)):
        conn.request("GET", "/healthz")
        conn.getresponse()
    conn.close()


def test_an_untrusted_client_cannot_be_fooled_by_another_ca(
    server: RunningServer, tmp_path: Path
) -> None:
    from webhook.serving.certs import generate_ca

    other_ca, _ = generate_ca("someone else")
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / "other.crt"
    path.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    context = ssl.create_default_context(cafile=str(path))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/healthz")
    conn.close()


def test_each_decision_is_one_json_log_line(server: RunningServer) -> None:
    server.send("/validate", review_document(workload("Job"), uid="log-e2e"))

    def logged() -> list[dict[str, object]]:
        lines = [orjson.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("uid") == "log-e2e"]

    deadline = time.monotonic() + 5  # decision lines are written in batches, within 0.5 s
    while not logged():
        assert time.monotonic() < deadline, "no decision line in the log"
        time.sleep(0.05)
    decisions = logged()
    assert len(decisions) == 1
    assert decisions[0]["verdict"] == "denied"
    assert decisions[0]["kind"] == "Job"


def test_a_bad_policy_file_fails_at_start_with_the_field_named(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "policy.yaml"
    bad.write_text("profiles:\n  web:\n    allow:\n      - cidr: 10.0.0.0/33\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--config",
            str(bad),
            "--cert-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "line 4" in result.stderr and "profiles.web.allow[0].cidr" in result.stderr
    assert "Traceback" not in result.stderr
