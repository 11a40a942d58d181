"""Certificates for serving: a local CA and a serving certificate signed by it.

The API server calls the webhook over HTTPS and trusts it through the `caBundle` of the webhook
configurations, so egress-guard can run its own small CA: ECDSA P-256, a 10-year CA, a 1-year
serving certificate renewed when it nears expiry, the CA kept across renewals so the `caBundle`
stays valid.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)

CA_CERT, CA_KEY, TLS_CERT, TLS_KEY = "ca.crt", "ca.key", "tls.crt", "tls.key"


class CertStatus(StrEnum):
    KEPT = "kept"
    GENERATED = "generated"
    RENEWED = "renewed"


@dataclass(frozen=True, slots=True)
class CertFiles:
    """The four files of a certificate directory."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.directory / CA_KEY

    @property
    def tls_cert(self) -> Path:
        return self.directory / TLS_CERT

    @property
    def tls_key(self) -> Path:
        return self.directory / TLS_KEY


@dataclass(frozen=True, slots=True)
class CertResult:
    files: CertFiles
    ca: CertStatus
    leaf: CertStatus
    not_after: dt.datetime


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use to reach a Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write a key readable by its owner only, atomically (a reader never sees half a key)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_ca(
    common_name: str = "egress-guard local CA",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_serving_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    dns_names: Sequence[str],
    ip_addresses: Iterable[str] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(dns_names)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ip_addresses)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _load_ca(files: CertFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The CA on disk if it is usable for another renewal; None if it must be replaced."""
    try:
        cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if cert.not_valid_after_utc - _now() < LEAF_VALIDITY:
        return None
    return cert, key


def _leaf_is_current(
    files: CertFiles, ca: x509.Certificate, dns: Sequence[str], ips: Sequence[str]
) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(files.tls_cert.read_bytes())
        key = serialization.load_pem_private_key(files.tls_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    if cert.issuer != ca.subject or cert.public_key() != key.public_key():
        return False
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return False
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = set(sans.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in sans.get_values_for_type(x509.IPAddress)
    }
    return set(dns) | {str(ipaddress.ip_address(ip)) for ip in ips} <= have


def ensure_certs(
    directory: Path, dns_names: Sequence[str], ip_addresses: Sequence[str] = ()
) -> CertResult:
    """Make `directory` hold a valid CA and a serving certificate for these names.

    Keeps a CA with more than a year left; issues a new serving certificate when there is none,
    when it expires within 30 days, or when it lacks one of the names asked for.
    """
    files = CertFiles(directory)
    directory.mkdir(parents=True, exist_ok=True)
    loaded = _load_ca(files)
    ca_status = CertStatus.KEPT
    if loaded is None:
        loaded = generate_ca()
        ca_status = CertStatus.GENERATED
        _write_private(files.ca_key, _key_pem(loaded[1]))
        _write_public(files.ca_cert, loaded[0].public_bytes(serialization.Encoding.PEM))
    ca_cert, ca_key = loaded
    if ca_status is CertStatus.KEPT and _leaf_is_current(files, ca_cert, dns_names, ip_addresses):
        leaf = x509.load_pem_x509_certificate(files.tls_cert.read_bytes())
        return CertResult(files, CertStatus.KEPT, CertStatus.KEPT, leaf.not_valid_after_utc)
    had_leaf = files.tls_cert.exists()
    cert, key = issue_serving_cert(ca_cert, ca_key, dns_names, ip_addresses)
    # Key first, then certificate: a reloading server pairs them by checking they match.
    _write_private(files.tls_key, _key_pem(key))
    _write_public(files.tls_cert, cert.public_bytes(serialization.Encoding.PEM))
    leaf_status = CertStatus.RENEWED if had_leaf else CertStatus.GENERATED
    return CertResult(files, ca_status, leaf_status, cert.not_valid_after_utc)


LOCAL_DNS = ["localhost"]
LOCAL_IPS = ["127.0.0.1", "::1"]
