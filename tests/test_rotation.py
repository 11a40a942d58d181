"""Certificate rotation under load: renewed files take effect for new connections, no restart,
and no review in flight fails."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from builders import PROFILE, pod, review_document
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from review_load import ReviewLoad
from running_server import RunningServer, running_server
from tls_peer import peer_certificate

from webhook.core.kube_names import service_dns_names
from webhook.serving.certs import LOCAL_DNS, LOCAL_IPS, ensure_certs

pytestmark = pytest.mark.e2e

SERVE_NAMES = [*LOCAL_DNS, *service_dns_names("egress-guard", "egress-guard")]
NEW_CERT_DEADLINE_S = 10.0
CONSECUTIVE_NEW = 20


def review(uid: str) -> Any:
    return review_document(pod({PROFILE: "none"}), uid=uid)


def der(path: Path) -> bytes:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)


def wait_until_only_served(server: RunningServer, expected: bytes) -> float:
    """Seconds until the workers have reloaded and new connections get only `expected`.

    A worker that has served nobody yet loads the files fresh, so the reload log line is what
    shows a running worker picked the renewal up; consecutive new connections then show that
    none is left serving the old certificate.
    """
    started = time.monotonic()
    consecutive = 0
    while time.monotonic() - started < NEW_CERT_DEADLINE_S:
        consecutive = consecutive + 1 if peer_certificate(server.port) == expected else 0
        if consecutive >= CONSECUTIVE_NEW and "serving certificate reloaded" in server.log():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("new connections were not all served the renewed certificate in time")


def renew_in_place(cert_dir: Path, _staging: Path) -> None:
    """What `egress-guard certs generate --renew` does: atomic replacement, key then cert."""
    ensure_certs(cert_dir, SERVE_NAMES, LOCAL_IPS, renew=True)


def secret_volume_layout(cert_dir: Path, staging: Path) -> None:
    """Lay `cert_dir` out as the kubelet mounts a Secret: files are symlinks through `..data`."""
    ensure_certs(staging, SERVE_NAMES, LOCAL_IPS)
    version = cert_dir / "..2000_01_01_00_00_00.1"
    version.mkdir(parents=True)
    for name in ("ca.crt", "tls.crt", "tls.key"):
        shutil.copy2(staging / name, version / name)
    (cert_dir / "..data").symlink_to(version.name)
    for name in ("ca.crt", "tls.crt", "tls.key"):
        (cert_dir / name).symlink_to(f"..data/{name}")


def renew_as_the_kubelet_does(cert_dir: Path, staging: Path) -> None:
    """A new timestamped directory, `..data` swapped to it atomically, the old one removed."""
    ensure_certs(staging, SERVE_NAMES, LOCAL_IPS, renew=True)
    old = (cert_dir / "..data").resolve()
    version = cert_dir / "..2000_01_01_00_00_01.2"
    version.mkdir()
    for name in ("ca.crt", "tls.crt", "tls.key"):
        shutil.copy2(staging / name, version / name)
    (cert_dir / "..data_tmp").symlink_to(version.name)
    (cert_dir / "..data_tmp").replace(cert_dir / "..data")
    shutil.rmtree(old)


@pytest.mark.parametrize(
    ("prepare", "renew"),
    [
        pytest.param(None, renew_in_place, id="files-replaced-in-place"),
        pytest.param(secret_volume_layout, renew_as_the_kubelet_does, id="secret-volume-swap"),
    ],
)
def test_renewed_certificate_is_served_to_new_connections_without_failing_a_review(
    tmp_path: Path,
    prepare: Callable[[Path, Path], None] | None,
    renew: Callable[[Path, Path], None],
) -> None:
    staging = tmp_path / "staging"
    if prepare is not None:
        prepare(tmp_path / "certs", staging)
    with running_server(tmp_path, workers=2) as server:
        before = der(server.cert_dir / "tls.crt")
        assert peer_certificate(server.port) == before
        held = server.connection()  # a kept-alive connection opened before the renewal
        assert held_review(server, held, "held-before") == before

        load = ReviewLoad([server.port], server.tls_context(), review, threads=3).start()
        load.wait_for_answers(60)
        renew(server.cert_dir, staging)
        after = der(server.cert_dir / "tls.crt")
        assert after != before
        seconds = wait_until_only_served(server, after)
        answered_at_renewal = load.answered()
        load.wait_for_answers(answered_at_renewal + 60)
        stats = load.stop()

        assert held_review(server, held, "held-after") == before  # old connection lives on
        held.close()

    print(
        f"rotation: {stats.answered} reviews, {len(stats.failures)} failures, "
        f"new certificate served after {seconds:.1f} s"
    )
    assert stats.failures == []
    assert stats.idle_close_retries == 0
    assert seconds <= NEW_CERT_DEADLINE_S


def held_review(server: RunningServer, conn: Any, uid: str) -> bytes:
    """Send a review on `conn`; the certificate that connection was served."""
    status, body = server.post(conn, "/validate", review(uid))
    assert status == 200 and body["response"]["uid"] == uid
    certificate = conn.sock.getpeercert(binary_form=True)
    assert certificate is not None
    return bytes(certificate)
