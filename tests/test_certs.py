"""Serving certificates: names, key usages, validity, renewal that keeps the CA, and a CA roll."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from tls_peer import handshake, tls_listener

from webhook.cli.main import main
from webhook.core.kube_names import service_dns_names
from webhook.serving import certs
from webhook.serving.certs import (
    CertError,
    CertFiles,
    CertStatus,
    RollStep,
    ensure_certs,
    read_ca_bundle,
    roll_ca,
)

SERVICE_NAMES = [
    "egress-guard",
    "egress-guard.egress-guard",
    "egress-guard.egress-guard.svc",
    "egress-guard.egress-guard.svc.cluster.local",
]


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    }


def generate(out: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["certs", "generate", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return result.output


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def cert_dir(tmp_path: Path) -> Path:
    out = tmp_path / "certs"
    generate(out, "--dns", "webhook.example.test", "--ip", "127.0.0.1", "--ip", "::1")
    return out


def test_service_names_cover_every_form_the_api_server_uses() -> None:
    assert service_dns_names("egress-guard", "egress-guard") == SERVICE_NAMES


def test_serving_certificate_carries_the_service_names_and_extra_names(cert_dir: Path) -> None:
    dns, ips = sans(load(cert_dir / "tls.crt"))
    assert dns == {*SERVICE_NAMES, "webhook.example.test"}
    assert ips == {"127.0.0.1", "::1"}


def test_key_usages_fit_a_server_certificate_and_a_ca(cert_dir: Path) -> None:
    leaf, ca = load(cert_dir / "tls.crt"), load(cert_dir / "ca.crt")
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ca_constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert ca_constraints.ca is True and ca_constraints.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    for cert in (leaf, ca):
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


def test_validity_is_a_year_for_the_leaf_and_ten_for_the_ca(cert_dir: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    leaf, ca = load(cert_dir / "tls.crt"), load(cert_dir / "ca.crt")
    assert leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc
    assert abs((leaf.not_valid_after_utc - now) - dt.timedelta(days=365)) < dt.timedelta(hours=1)
    assert abs((ca.not_valid_after_utc - now) - dt.timedelta(days=3650)) < dt.timedelta(hours=1)
    leaf.verify_directly_issued_by(ca)


def test_private_keys_are_readable_by_their_owner_only(cert_dir: Path) -> None:
    for name in ("tls.key", "ca.key"):
        assert stat.S_IMODE((cert_dir / name).stat().st_mode) == 0o600


def test_rerunning_keeps_both_certificates(cert_dir: Path) -> None:
    before = {n: (cert_dir / n).read_bytes() for n in ("ca.crt", "ca.key", "tls.crt", "tls.key")}
    output = generate(cert_dir, "--dns", "webhook.example.test", "--ip", "127.0.0.1", "--ip", "::1")
    assert "(kept" in output
    assert {n: (cert_dir / n).read_bytes() for n in before} == before


def test_a_leaf_expiring_within_30_days_is_renewed_with_the_same_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(certs, "LEAF_VALIDITY", dt.timedelta(days=20))
    first = ensure_certs(tmp_path, SERVICE_NAMES)
    ca_before = (tmp_path / "ca.crt").read_bytes()
    monkeypatch.undo()
    second = ensure_certs(tmp_path, SERVICE_NAMES)
    assert (first.leaf, second.ca, second.leaf) == (
        CertStatus.GENERATED,
        CertStatus.KEPT,
        CertStatus.RENEWED,
    )
    assert (tmp_path / "ca.crt").read_bytes() == ca_before
    assert second.not_after - first.not_after > dt.timedelta(days=300)
    load(tmp_path / "tls.crt").verify_directly_issued_by(load(tmp_path / "ca.crt"))


def test_a_leaf_with_other_names_or_forced_renewal_is_reissued(tmp_path: Path) -> None:
    ensure_certs(tmp_path, SERVICE_NAMES)
    assert ensure_certs(tmp_path, [*SERVICE_NAMES, "extra.example.test"]).leaf is CertStatus.RENEWED
    assert ensure_certs(tmp_path, SERVICE_NAMES).leaf is CertStatus.RENEWED  # name dropped
    assert ensure_certs(tmp_path, SERVICE_NAMES).leaf is CertStatus.KEPT
    serial = load(tmp_path / "tls.crt").serial_number
    assert ensure_certs(tmp_path, SERVICE_NAMES, renew=True).ca is CertStatus.KEPT
    assert load(tmp_path / "tls.crt").serial_number != serial


def test_a_leaf_signed_by_another_ca_of_the_same_name_is_reissued(tmp_path: Path) -> None:
    other = tmp_path / "other"
    ensure_certs(other, SERVICE_NAMES)
    ensure_certs(tmp_path, SERVICE_NAMES)
    (tmp_path / "tls.crt").write_bytes((other / "tls.crt").read_bytes())
    (tmp_path / "tls.key").write_bytes((other / "tls.key").read_bytes())
    assert ensure_certs(tmp_path, SERVICE_NAMES).leaf is CertStatus.RENEWED
    load(tmp_path / "tls.crt").verify_directly_issued_by(load(tmp_path / "ca.crt"))


def test_a_ca_near_its_end_is_kept_and_reported_one_at_its_end_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(certs, "CA_VALIDITY", dt.timedelta(days=200))
    ensure_certs(tmp_path, SERVICE_NAMES)
    monkeypatch.setattr(certs, "CA_VALIDITY", dt.timedelta(days=3650))
    kept = ensure_certs(tmp_path, SERVICE_NAMES, renew=True)
    assert kept.ca is CertStatus.KEPT and kept.ca_needs_roll
    assert kept.not_after <= kept.ca_not_after  # a leaf never outlives its CA
    output = generate(tmp_path, "--service", "egress-guard", "--namespace", "egress-guard")
    assert "roll-ca begin" in output

    monkeypatch.setattr(certs, "CA_VALIDITY", dt.timedelta(days=10))
    ensure_certs(tmp_path / "short", SERVICE_NAMES)
    monkeypatch.setattr(certs, "CA_VALIDITY", dt.timedelta(days=3650))
    replaced = ensure_certs(tmp_path / "short", SERVICE_NAMES)
    assert (replaced.ca, replaced.leaf) == (CertStatus.GENERATED, CertStatus.RENEWED)


@pytest.mark.parametrize("bad", ["--dns=Not_A_Name", "--dns=a..b", "--ip=300.1.1.1"])
def test_invalid_names_are_a_usage_error(tmp_path: Path, bad: str) -> None:
    result = CliRunner().invoke(main, ["certs", "generate", "--out", str(tmp_path), bad])
    assert result.exit_code == 2
    assert "error:" in result.output
    assert not (tmp_path / "tls.crt").exists()


def test_a_client_trusting_only_the_ca_connects_by_every_name(cert_dir: Path) -> None:
    ca = cert_dir / "ca.crt"
    with tls_listener(cert_dir / "tls.crt", cert_dir / "tls.key") as port:
        for name in [*SERVICE_NAMES, "webhook.example.test", "127.0.0.1"]:
            assert handshake(port, name, ca) == b"ok", name
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            handshake(port, "not-in-the-certificate.example.test", ca)
        other = cert_dir.parent / "other"
        ensure_certs(other, SERVICE_NAMES)
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, SERVICE_NAMES[0], other / "ca.crt")


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_a_client_connects_by_the_ipv6_loopback_address(cert_dir: Path) -> None:
    with tls_listener(cert_dir / "tls.crt", cert_dir / "tls.key", host="::1") as port:
        assert handshake(port, "::1", cert_dir / "ca.crt", host="::1") == b"ok"


def test_a_ca_roll_never_leaves_the_bundle_distrusting_the_served_certificate(
    cert_dir: Path,
) -> None:
    files = CertFiles(cert_dir)
    old_ca = files.ca_cert.read_bytes()
    (cert_dir.parent / "old-ca.crt").write_bytes(old_ca)
    old_leaf = files.tls_cert.read_bytes()
    name = SERVICE_NAMES[2]

    def bundle_size() -> int:
        return len(x509.load_pem_x509_certificates(files.ca_bundle.read_bytes()))

    assert bundle_size() == 1
    roll_ca(cert_dir, RollStep.BEGIN)
    assert bundle_size() == 2 and files.tls_cert.read_bytes() == old_leaf
    with tls_listener(files.tls_cert, files.tls_key) as port:
        assert handshake(port, name, files.ca_bundle) == b"ok"

    roll_ca(cert_dir, RollStep.PROMOTE)
    assert files.ca_cert.read_bytes() != old_ca
    assert files.previous_ca_cert.read_bytes() == old_ca and bundle_size() == 2
    assert sans(load(files.tls_cert)) == sans(x509.load_pem_x509_certificate(old_leaf))
    with tls_listener(files.tls_cert, files.tls_key) as port:
        assert handshake(port, name, files.ca_bundle) == b"ok"  # the bundle trusts both
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, name, cert_dir.parent / "old-ca.crt")  # the leaf did change CA

    # Renewal during the roll keeps the promoted CA and the bundle.
    assert ensure_certs(cert_dir, SERVICE_NAMES, renew=True).ca is CertStatus.KEPT
    assert bundle_size() == 2
    roll_ca(cert_dir, RollStep.FINISH)
    assert bundle_size() == 1 and not files.previous_ca_cert.exists()
    with tls_listener(files.tls_cert, files.tls_key) as port:
        assert handshake(port, name, files.ca_bundle) == b"ok"


def test_roll_steps_out_of_order_are_refused(cert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CertError, match="roll-ca begin"):
        roll_ca(cert_dir, RollStep.PROMOTE)
    with pytest.raises(CertError, match="certs generate"):
        roll_ca(tmp_path / "empty", RollStep.BEGIN)
    result = CliRunner().invoke(main, ["certs", "roll-ca", "begin", "--out", str(cert_dir)])
    assert result.exit_code == 0 and "inject-ca" in result.output
    with pytest.raises(CertError, match="promote"):
        roll_ca(cert_dir, RollStep.FINISH)


def test_the_bundle_handed_to_the_api_server_holds_only_valid_cas(cert_dir: Path) -> None:
    assert read_ca_bundle(cert_dir / "ca-bundle.crt") == (cert_dir / "ca.crt").read_bytes()
    with pytest.raises(CertError, match="not a CA"):
        read_ca_bundle(cert_dir / "tls.crt")
    (cert_dir / "junk.crt").write_text("not pem")
    with pytest.raises(CertError, match="no PEM"):
        read_ca_bundle(cert_dir / "junk.crt")
    with pytest.raises(CertError, match="cannot read"):
        read_ca_bundle(cert_dir / "missing.crt")
