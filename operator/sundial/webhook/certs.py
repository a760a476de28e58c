"""Self-signed TLS for the webhook: a CA, the serving certificate it signs, and when to renew them.

Pure: no files, no Kubernetes, no clock ("now" is an argument), so :func:`renew` is the one place
that decides, whether the material lives in local files or in a Secret shared by replicas.

ECDSA P-256 keys (fast to generate, accepted by the API server's Go TLS). The serving certificate
names the webhook's hosts as SANs (IP or DNS), which is all Go checks; the common name is cosmetic.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_VALIDITY",
    "SERVING_VALIDITY",
    "Issued",
    "Material",
    "Renewed",
    "issue_serving",
    "new_ca",
    "next_renewal",
    "renew",
    "renew_at",
    "split_pem",
]

CA_VALIDITY = timedelta(days=3650)
SERVING_VALIDITY = timedelta(days=90)
RENEW_AFTER = 2 / 3
"""A certificate is renewed once this fraction of its lifetime has passed (day 60 of 90)."""
MAX_OLD_CAS = 2
"""Earlier CAs kept in the bundle (until they expire) after a CA renewal."""
CLOCK_SKEW = timedelta(minutes=5)
"""Certificates are valid from a little before "now", for API servers whose clock is behind."""


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def new_ca(*, now: datetime, validity: timedelta = CA_VALIDITY, name: str = "sundial-webhook-ca") -> Issued:
    """A fresh CA that signs only serving certificates (path length 0)."""
    now = _aware(now)
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
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
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _san(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def issue_serving(
    ca: Issued, *, hostnames: Sequence[str], now: datetime, validity: timedelta = SERVING_VALIDITY
) -> Issued:
    """A server certificate for ``hostnames`` signed by ``ca``; never valid beyond the CA itself."""
    if not hostnames:
        raise ValueError("a serving certificate needs at least one hostname")
    now = _aware(now)
    ca_cert = ca.certificate
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an ECDSA key")
    key = _key()
    names = list(dict.fromkeys(hostnames))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_san(name) for name in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def renew_at(cert: x509.Certificate) -> datetime:
    """When ``cert`` is due for renewal: after :data:`RENEW_AFTER` of its lifetime."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * RENEW_AFTER


def split_pem(bundle: bytes) -> list[x509.Certificate]:
    """The certificates in a PEM bundle (keys and other blocks are ignored)."""
    return x509.load_pem_x509_certificates(bundle) if b"-----BEGIN CERTIFICATE-----" in bundle else []


class Renewed(enum.Enum):
    """What :func:`renew` changed."""

    NOTHING = "nothing"
    SERVING = "serving"
    """A new serving certificate from the same CA: the CA bundle is unchanged."""
    CA = "ca"
    """The CA bundle changed (new CA, or an old one expired out of it): the API server must get it."""


@dataclass(frozen=True)
class Material:
    """Everything the webhook's TLS needs, PEM-encoded."""

    ca_bundle: bytes
    """The current CA first, then earlier CAs until they expire, so certificates of both are trusted."""
    ca_key: bytes
    cert: bytes
    """The serving certificate."""
    key: bytes
    """The serving certificate's key."""


def _current_ca(material: Material, bundle: list[x509.Certificate]) -> Issued | None:
    try:
        key = serialization.load_pem_private_key(material.ca_key, password=None)
    except (ValueError, TypeError):
        return None
    if not bundle or bundle[0].public_key() != key.public_key():
        return None
    return Issued(bundle[0].public_bytes(serialization.Encoding.PEM), material.ca_key)


def _serving_fits(material: Material, ca: Issued, hostnames: Sequence[str], now: datetime) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(material.cert)
        key = serialization.load_pem_private_key(material.key, password=None)
        cert.verify_directly_issued_by(ca.certificate)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    names = {str(name) for name in sans.get_values_for_type(x509.DNSName)}
    names |= {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return cert.public_key() == key.public_key() and names >= set(hostnames) and now < renew_at(cert)


def _pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)


def renew(
    material: Material | None,
    *,
    hostnames: Sequence[str],
    now: datetime,
    ca_validity: timedelta = CA_VALIDITY,
    serving_validity: timedelta = SERVING_VALIDITY,
) -> tuple[Material, Renewed]:
    """``material`` made complete and current: whatever is missing, unusable or due is (re)issued.

    A renewed CA keeps its predecessor in the bundle until the predecessor expires; a renewed CA
    always comes with a new serving certificate signed by it.
    """
    now = _aware(now)
    bundle: list[x509.Certificate] = []
    ca: Issued | None = None
    if material is not None:
        try:
            bundle = split_pem(material.ca_bundle)
        except ValueError:
            bundle = []
        ca = _current_ca(material, bundle)
    renewed = Renewed.NOTHING
    if ca is None or now >= renew_at(ca.certificate):
        ca = new_ca(now=now, validity=ca_validity)
        kept = [cert for cert in bundle if cert.not_valid_after_utc > now][:MAX_OLD_CAS]
        bundle = [ca.certificate, *kept]
        renewed = Renewed.CA
    elif any(cert.not_valid_after_utc <= now for cert in bundle):
        bundle = [cert for cert in bundle if cert.not_valid_after_utc > now]
        renewed = Renewed.CA
    if renewed is Renewed.NOTHING and material is not None:
        if _serving_fits(material, ca, hostnames, now):
            return material, Renewed.NOTHING
        serving = issue_serving(ca, hostnames=hostnames, now=now, validity=serving_validity)
        return Material(material.ca_bundle, ca.key_pem, serving.cert_pem, serving.key_pem), Renewed.SERVING
    serving = issue_serving(ca, hostnames=hostnames, now=now, validity=serving_validity)
    return Material(_pem(bundle), ca.key_pem, serving.cert_pem, serving.key_pem), renewed


def next_renewal(material: Material) -> datetime | None:
    """When :func:`renew` will next have something to do; ``None`` if it has something to do now."""
    try:
        bundle = split_pem(material.ca_bundle)
        cert = x509.load_pem_x509_certificate(material.cert)
    except ValueError:
        return None
    if not bundle:
        return None
    moments = [renew_at(bundle[0]), renew_at(cert), *(old.not_valid_after_utc for old in bundle[1:])]
    return min(moments)
