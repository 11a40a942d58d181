"""Certificates for serving: a local CA and a serving certificate signed by it.

The API server calls the webhook over HTTPS and trusts it through the `caBundle` of the webhook
configurations, so egress-guard can run its own small CA: ECDSA P-256, a 10-year CA, a 1-year
serving certificate renewed when it nears expiry, the CA kept across renewals so the `caBundle`
stays valid.

Replacing the CA is a roll in three steps, so the API server never meets a certificate it does
not trust: `begin` adds a next CA to the bundle (inject it), `promote` signs the serving
certificate with it (the bundle still holds the old CA), `finish` drops the old CA from the bundle.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)
ROLL_CA_BEFORE = dt.timedelta(days=365)
"""A CA with less than this left still signs, but is reported: time to roll it."""

CA_CERT, CA_KEY, TLS_CERT, TLS_KEY = "ca.crt", "ca.key", "tls.crt", "tls.key"
CA_BUNDLE = "ca-bundle.crt"
NEXT_CA_CERT, NEXT_CA_KEY, PREVIOUS_CA_CERT = "ca.next.crt", "ca.next.key", "ca.previous.crt"

_DNS_NAME = re.compile(
    r"^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)


class CertError(ValueError):
    """The certificate directory cannot be used as asked; the message says what to do."""


class CertStatus(StrEnum):
    KEPT = "kept"
    GENERATED = "generated"
    RENEWED = "renewed"


@dataclass(frozen=True, slots=True)
class CertFiles:
    """The files of a certificate directory."""

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

    @property
    def ca_bundle(self) -> Path:
        """Every CA the API server must trust: the current one, plus the other during a roll."""
        return self.directory / CA_BUNDLE

    @property
    def next_ca_cert(self) -> Path:
        return self.directory / NEXT_CA_CERT

    @property
    def next_ca_key(self) -> Path:
        return self.directory / NEXT_CA_KEY

    @property
    def previous_ca_cert(self) -> Path:
        return self.directory / PREVIOUS_CA_CERT

    def trusted_bundle(self) -> Path:
        """The file to hand the API server as `caBundle`: the bundle, or ca.crt without one."""
        return self.ca_bundle if self.ca_bundle.is_file() else self.ca_cert


@dataclass(frozen=True, slots=True)
class CertResult:
    files: CertFiles
    ca: CertStatus
    leaf: CertStatus
    not_after: dt.datetime
    ca_not_after: dt.datetime

    @property
    def ca_needs_roll(self) -> bool:
        return self.ca_not_after - _now() < ROLL_CA_BEFORE


def check_dns_name(name: str) -> str:
    """A DNS name as a certificate may carry it (lower case, RFC 1123, optional `*.`)."""
    if len(name) > 253 or not _DNS_NAME.match(name):
        raise CertError(f"{name!r} is not a valid DNS name for a certificate")
    return name


def check_ip_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise CertError(f"{address!r} is not an IP address") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write a key readable by its owner only, atomically (a reader never sees half a key)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover could carry wider permissions
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def generate_ca(
    common_name: str = "egress-guard local CA",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A dated name tells the CAs of a roll apart in a bundle and in `openssl x509 -text`.
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} {_now():%Y-%m-%d %H:%M:%S}")]
    )
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
    """A serving certificate for these names, valid a year or until the CA expires."""
    dns = list(dict.fromkeys(check_dns_name(n) for n in dns_names))
    ips = list(dict.fromkeys(check_ip_address(ip) for ip in ip_addresses))
    if not dns:
        raise CertError("a serving certificate needs at least one DNS name")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def issue_client_cert(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common_name: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A client certificate (clientAuth) for the API server to present to the webhook."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def write_client_certs(out: Path, common_name: str = "kube-apiserver") -> tuple[Path, Path, Path]:
    """A client CA (kept if present) and a client certificate it signed, in `out`:
    (client-ca.crt, client.crt, client.key). The server takes client-ca.crt as
    --client-ca-file; the API server presents client.crt (its AdmissionConfiguration)."""
    out.mkdir(parents=True, exist_ok=True)
    ca_path, ca_key_path = out / "client-ca.crt", out / "client-ca.key"
    if ca_path.is_file() and ca_key_path.is_file():
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise CertError(f"{ca_key_path} is not an EC private key")
        ca_key = loaded
    else:
        ca_cert, ca_key = generate_ca("egress-guard client CA")
        _write_private(ca_key_path, _key_pem(ca_key))
        _write_public(ca_path, _cert_pem(ca_cert))
    cert, key = issue_client_cert(ca_cert, ca_key, common_name)
    _write_private(out / "client.key", _key_pem(key))
    _write_public(out / "client.crt", _cert_pem(cert))
    return ca_path, out / "client.crt", out / "client.key"


def _load_pair(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.public_key() != key.public_key():
        return None
    return cert, key


def _load_ca(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """A CA on disk that can still sign a useful serving certificate; None if there is none.

    A CA is kept while it is valid for more than RENEW_BEFORE: replacing it would break the
    caBundle the API server holds. One nearing its end is reported (`ca_needs_roll`), not replaced.
    """
    pair = _load_pair(cert_path, key_path)
    if pair is None:
        return None
    cert = pair[0]
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
    if not constraints.ca or cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return None
    return pair


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether `ca` signed `cert` (names alone do not tell: the CAs of a roll may share one)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def certificate_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses a certificate is valid for."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = list(sans.get_values_for_type(x509.DNSName))
    return dns, [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]


def _leaf_is_current(
    files: CertFiles, ca: x509.Certificate, dns: Sequence[str], ips: Sequence[str]
) -> bool:
    """A serving certificate signed by this CA, for exactly these names, not expiring soon."""
    pair = _load_pair(files.tls_cert, files.tls_key)
    if pair is None:
        return False
    cert = pair[0]
    if not issued_by(cert, ca) or cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return False
    have_dns, have_ips = certificate_names(cert)
    return set(have_dns) == set(dns) and set(have_ips) == {check_ip_address(ip) for ip in ips}


def _write_leaf(
    files: CertFiles,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
) -> x509.Certificate:
    cert, key = issue_serving_cert(ca[0], ca[1], dns_names, ip_addresses)
    # Key first, then certificate: a reloading server pairs them by checking they match.
    _write_private(files.tls_key, _key_pem(key))
    _write_public(files.tls_cert, _cert_pem(cert))
    return cert


def _write_bundle(files: CertFiles) -> None:
    """ca-bundle.crt: the current CA, then the next or previous one while a roll is under way."""
    parts = [files.ca_cert, files.next_ca_cert, files.previous_ca_cert]
    bundle = b"".join(p.read_bytes() for p in parts if p.is_file())
    try:
        if files.ca_bundle.read_bytes() == bundle:
            return
    except OSError:
        pass
    _write_public(files.ca_bundle, bundle)


def ensure_certs(
    directory: Path,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    *,
    renew: bool = False,
) -> CertResult:
    """Make `directory` hold a valid CA and a serving certificate for these names.

    Keeps a CA that is still valid for more than 30 days; issues a new serving certificate when
    there is none, when it expires within 30 days, when its names differ from those asked for,
    when the CA did not sign it, or when `renew` says so.
    """
    dns_names = [check_dns_name(n) for n in dns_names]
    ip_addresses = [check_ip_address(ip) for ip in ip_addresses]
    files = CertFiles(directory)
    directory.mkdir(parents=True, exist_ok=True)
    loaded = _load_ca(files.ca_cert, files.ca_key)
    ca_status = CertStatus.KEPT
    if loaded is None:
        loaded = generate_ca()
        ca_status = CertStatus.GENERATED
        _write_private(files.ca_key, _key_pem(loaded[1]))
        _write_public(files.ca_cert, _cert_pem(loaded[0]))
        # A roll under way belonged to the CA just replaced.
        for stale in (files.next_ca_cert, files.next_ca_key, files.previous_ca_cert):
            stale.unlink(missing_ok=True)
    _write_bundle(files)
    ca_cert = loaded[0]
    if (
        not renew
        and ca_status is CertStatus.KEPT
        and _leaf_is_current(files, ca_cert, dns_names, ip_addresses)
    ):
        leaf = x509.load_pem_x509_certificate(files.tls_cert.read_bytes())
        return CertResult(
            files,
            CertStatus.KEPT,
            CertStatus.KEPT,
            leaf.not_valid_after_utc,
            ca_cert.not_valid_after_utc,
        )
    had_leaf = files.tls_cert.exists()
    cert = _write_leaf(files, loaded, dns_names, ip_addresses)
    leaf_status = CertStatus.RENEWED if had_leaf else CertStatus.GENERATED
    return CertResult(
        files, ca_status, leaf_status, cert.not_valid_after_utc, ca_cert.not_valid_after_utc
    )


class RollStep(StrEnum):
    BEGIN = "begin"
    PROMOTE = "promote"
    FINISH = "finish"


def _current_ca(files: CertFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    pair = _load_pair(files.ca_cert, files.ca_key)
    if pair is None:
        raise CertError(
            f"no usable CA in {files.directory} (ca.crt and ca.key): run `certs generate` first"
        )
    return pair


def roll_ca(directory: Path, step: RollStep) -> str:
    """Carry out one step of a CA roll; returns what to do next, for people.

    begin:   a next CA is created and added to ca-bundle.crt (the serving certificate is kept).
    promote: the next CA becomes the CA and signs a new serving certificate for the same names;
             the old CA stays in ca-bundle.crt as ca.previous.crt.
    finish:  the old CA leaves ca-bundle.crt.
    """
    files = CertFiles(directory)
    if step is RollStep.BEGIN:
        _current_ca(files)
        if _load_ca(files.next_ca_cert, files.next_ca_key) is None:
            cert, key = generate_ca()
            _write_private(files.next_ca_key, _key_pem(key))
            _write_public(files.next_ca_cert, _cert_pem(cert))
        files.previous_ca_cert.unlink(missing_ok=True)
        _write_bundle(files)
        return (
            f"{files.ca_bundle} now holds the current and the next CA: run `certs inject-ca`, "
            "wait until every API server uses it, then `certs roll-ca promote`"
        )
    if step is RollStep.PROMOTE:
        old_cert, _ = _current_ca(files)
        nxt = _load_ca(files.next_ca_cert, files.next_ca_key)
        if nxt is None:
            raise CertError(f"no next CA in {directory}: run `certs roll-ca begin` first")
        leaf = _load_pair(files.tls_cert, files.tls_key)
        if leaf is None:
            raise CertError(f"no serving certificate in {directory}: run `certs generate` first")
        dns, ips = certificate_names(leaf[0])
        _write_public(files.previous_ca_cert, _cert_pem(old_cert))
        _write_private(files.ca_key, _key_pem(nxt[1]))
        _write_public(files.ca_cert, _cert_pem(nxt[0]))
        files.next_ca_cert.unlink()
        files.next_ca_key.unlink()
        _write_bundle(files)
        _write_leaf(files, nxt, dns, ips)
        return (
            f"the serving certificate is now signed by the new CA ({files.ca_bundle} still trusts "
            "the old one): once every replica serves it, run `certs roll-ca finish`"
        )
    _current_ca(files)
    if files.next_ca_cert.exists():
        raise CertError(f"{files.next_ca_cert} was never promoted: run `certs roll-ca promote`")
    files.previous_ca_cert.unlink(missing_ok=True)
    _write_bundle(files)
    return f"{files.ca_bundle} holds the current CA only: run `certs inject-ca`"


def read_ca_bundle(path: Path) -> bytes:
    """A PEM bundle of CA certificates, checked before it is handed to the API server."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CertError(f"cannot read the CA bundle {path}: {err.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertError(f"{path} holds no PEM certificate") from None
    now = _now()
    for cert in certs:
        subject = cert.subject.rfc4514_string()
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise CertError(f"{path}: {subject} is not a CA certificate")
        if cert.not_valid_after_utc <= now:
            raise CertError(f"{path}: {subject} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    return b"".join(_cert_pem(cert) for cert in certs)


LOCAL_DNS = ["localhost"]
LOCAL_IPS = ["127.0.0.1", "::1"]


def _read_for_serving(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        try:
            info = path.stat()
            found = f"owned by uid {info.st_uid}, mode {info.st_mode & 0o777:04o}"
        except OSError:
            found = "not readable"
        raise CertError(
            f"cannot read {path}: permission denied ({found}; egress-guard runs as uid "
            f"{os.geteuid()}, gid {os.getegid()}): make it readable by that user or group"
        ) from None
    except OSError as err:
        raise CertError(f"cannot read {path}: {err.strerror}") from None


def check_serving_files(files: CertFiles) -> x509.Certificate:
    """The serving certificate and key, read and parsed as the server will use them.

    Raises CertError naming the file and the fault (unreadable, not PEM, encrypted, a key that is
    not the certificate's), so a server never starts only to fail every TLS handshake.
    """
    cert_pem = _read_for_serving(files.tls_cert)
    key_pem = _read_for_serving(files.tls_key)
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        raise CertError(f"{files.tls_cert} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CertError(f"{files.tls_key} is encrypted: the server needs it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertError(f"{files.tls_key} holds no PEM private key") from None
    if cert.public_key() != key.public_key():
        raise CertError(f"{files.tls_key} is not the key of {files.tls_cert}")
    return cert
