"""The webhook's self-signed certificates as files, renewed well before they expire.

Files in the directory (kopf's ``WebhookServer`` reads them and reloads when they change):

- ``ca.crt``: the CA bundle for the API server (``caBundle``): the current CA, plus the previous one
  until it expires, so the API server trusts the old and the new serving certificate alike;
- ``ca.key``: the current CA's key;
- ``tls.pem``: the serving certificate followed by its key, in ONE file replaced atomically, so a
  reload never pairs a new certificate with an old key.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sundial.webhook import certs

__all__ = ["CertificateFiles", "Renewed", "keep_renewed"]

log = logging.getLogger("sundial.webhook")


class Renewed(enum.Enum):
    NOTHING = "nothing"
    SERVING = "serving"
    """A new serving certificate from the same CA: the CA bundle is unchanged."""
    CA = "ca"
    """A new CA (and serving certificate): the CA bundle changed and must reach the API server."""


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically, readable by the owner only."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CertificateFiles:
    """Self-signed webhook TLS in ``directory``; :meth:`ensure` creates or renews what is due."""

    def __init__(
        self,
        directory: Path,
        *,
        hostnames: Sequence[str],
        ca_validity: timedelta = certs.CA_VALIDITY,
        serving_validity: timedelta = certs.SERVING_VALIDITY,
    ) -> None:
        self.directory = directory
        self.hostnames = list(dict.fromkeys(hostnames))
        self.ca_validity = ca_validity
        self.serving_validity = serving_validity

    @property
    def ca_bundle_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def server_pem_path(self) -> Path:
        """Certificate and key in one file: pass it as both ``certfile`` and ``pkeyfile``."""
        return self.directory / "tls.pem"

    @property
    def _ca_key_path(self) -> Path:
        return self.directory / "ca.key"

    def ca_bundle(self) -> bytes:
        return self.ca_bundle_path.read_bytes()

    # ------------------------------------------------------------------ reading what is there
    def _bundle(self) -> list[x509.Certificate]:
        try:
            return certs.split_pem(self.ca_bundle_path.read_bytes())
        except (OSError, ValueError):
            return []

    def _ca(self) -> certs.Issued | None:
        bundle = self._bundle()
        try:
            key_pem = self._ca_key_path.read_bytes()
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (OSError, ValueError, TypeError):
            return None
        if not bundle or bundle[0].public_key() != key.public_key():
            return None
        return certs.Issued(bundle[0].public_bytes(serialization.Encoding.PEM), key_pem)

    def _serving(self) -> x509.Certificate | None:
        try:
            data = self.server_pem_path.read_bytes()
            cert = x509.load_pem_x509_certificate(data)
            key = serialization.load_pem_private_key(data, password=None)
        except (OSError, ValueError, TypeError):
            return None
        return cert if cert.public_key() == key.public_key() else None

    def _serving_fits(self, cert: x509.Certificate, ca: certs.Issued, now: datetime) -> bool:
        try:
            cert.verify_directly_issued_by(ca.certificate)
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, TypeError, x509.InvalidSignature, x509.ExtensionNotFound):
            return False
        names = {str(name) for name in sans.get_values_for_type(x509.DNSName)}
        names |= {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
        return names >= set(self.hostnames) and now < certs.renew_at(cert)

    # ------------------------------------------------------------------ renewing
    def ensure(self, now: datetime) -> Renewed:
        """Create missing or unusable files, renew what is due; returns what changed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        renewed = Renewed.NOTHING
        bundle = self._bundle()
        ca = self._ca()
        if ca is None or now >= certs.renew_at(ca.certificate):
            previous = [ca.certificate] if ca is not None else []
            ca = certs.new_ca(now=now, validity=self.ca_validity)
            kept = [cert for cert in previous if cert.not_valid_after_utc > now]
            _write(self._ca_key_path, ca.key_pem)
            self._write_bundle([ca.certificate, *kept])
            renewed = Renewed.CA
            log.info("webhook CA created, valid until %s", ca.not_after.isoformat())
        elif any(cert.not_valid_after_utc <= now for cert in bundle):
            self._write_bundle([cert for cert in bundle if cert.not_valid_after_utc > now])
            renewed = Renewed.CA
        serving = self._serving()
        if renewed is Renewed.CA or serving is None or not self._serving_fits(serving, ca, now):
            issued = certs.issue_serving(ca, hostnames=self.hostnames, now=now, validity=self.serving_validity)
            _write(self.server_pem_path, issued.cert_pem + issued.key_pem)
            log.info(
                "webhook serving certificate issued for %s, valid until %s",
                ", ".join(self.hostnames),
                issued.not_after.isoformat(),
            )
            renewed = Renewed.SERVING if renewed is Renewed.NOTHING else renewed
        return renewed

    def _write_bundle(self, bundle: list[x509.Certificate]) -> None:
        _write(self.ca_bundle_path, b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in bundle))

    def next_renewal(self) -> datetime:
        """When :meth:`ensure` has something to do next (renewal, or an old CA leaving the bundle)."""
        moments = [certs.renew_at(cert) for cert in self._bundle()[:1]]
        moments += [cert.not_valid_after_utc for cert in self._bundle()[1:]]
        serving = self._serving()
        if serving is not None:
            moments.append(certs.renew_at(serving))
        return min(moments, default=datetime.now(UTC))


async def keep_renewed(
    files: CertificateFiles,
    *,
    on_ca_change: Callable[[], Awaitable[None]] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    max_sleep: float = 3600.0,
) -> None:
    """Renew forever. Wakes at least hourly, so a suspended host or a clock jump is noticed."""
    while True:
        delay = (files.next_renewal() - clock()).total_seconds()
        await asyncio.sleep(min(max(delay, 1.0), max_sleep))
        try:
            renewed = files.ensure(clock())
        except Exception:
            log.exception("renewing the webhook certificate failed; retrying")
            await asyncio.sleep(min(60.0, max_sleep))
            continue
        if renewed is Renewed.CA and on_ca_change is not None:
            await on_ca_change()
