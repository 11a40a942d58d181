"""Client authentication: with --client-ca-file, only a client presenting a certificate from that
CA (the API server, configured by its AdmissionConfiguration) gets reviews answered. A forged
review from any pod learns nothing (the namespace preview names workloads); the kubelet's probes
and Prometheus still get in without one."""

from __future__ import annotations

import contextlib
import http.client
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import review_document, workload
from running_server import RunningServer, running_server

from webhook.serving.certs import write_client_certs

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("client")
    write_client_certs(out / "apiserver")
    write_client_certs(out / "stranger", "someone")  # a certificate from another CA
    return out


@pytest.fixture(scope="module")
def server(clients: Path) -> Iterator[RunningServer]:
    ca = clients / "apiserver" / "client-ca.crt"
    with running_server(clients, "--client-ca-file", str(ca)) as running:
        yield running


def request(
    server: RunningServer, path: str, *, cert: Path | None = None, document: Any = None
) -> tuple[int, bytes]:
    context = server.tls_context()
    if cert is not None:
        context.load_cert_chain(cert / "client.crt", cert / "client.key")
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    with contextlib.closing(conn):
        if document is None:
            conn.request("GET", path)
        else:
            body = orjson.dumps(document)
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status, reply.read()


def test_the_api_servers_certificate_gets_reviews_answered(
    server: RunningServer, clients: Path
) -> None:
    status, body = request(
        server, "/validate", cert=clients / "apiserver", document=review_document(workload("Pod"))
    )
    assert status == 200 and orjson.loads(body)["response"]["uid"]


@pytest.mark.parametrize("who", [None, "stranger"], ids=["no-certificate", "another-ca"])
def test_anyone_else_gets_no_answer(server: RunningServer, clients: Path, who: str | None) -> None:
    forged = review_document(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}},
        namespace="",
    )
    try:
        status, body = request(
            server, "/validate", cert=clients / who if who else None, document=forged
        )
    except (ssl.SSLError, ConnectionResetError, http.client.HTTPException):
        return  # a certificate the CA did not sign fails the handshake: no answer either
    assert status == 401
    assert b"client certificate" in body and b"payments" not in body


def test_probes_and_metrics_need_no_certificate(server: RunningServer) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert request(server, path)[0] == 200, path
