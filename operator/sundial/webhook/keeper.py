"""The webhook's self-signed certificates: where they live, and renewing them before they expire.

The server reads local files (kopf's ``WebhookServer`` reloads them when they change):

- ``ca.crt``: the CA bundle for the API server (``caBundle``);
- ``ca.key``: the current CA's key;
- ``tls.pem``: the serving certificate followed by its key, in ONE file replaced atomically, so a
  reload never pairs a new certificate with an old key.

Where the material comes from is a :class:`Source`: :class:`LocalSource` keeps it only in those files
(one replica); :class:`sundial.webhook.secret.SecretSource` shares it between replicas in a Secret
and mirrors it into the files.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography import x509

from sundial.webhook import certs

__all__ = ["CertificateFiles", "LocalSource", "Source", "keep_renewed"]

log = logging.getLogger("sundial.webhook")


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically, readable by the owner only (``mkstemp`` creates files 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CertificateFiles:
    """The material as the server reads it, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def ca_bundle_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def server_pem_path(self) -> Path:
        """Certificate and key in one file: pass it as both ``certfile`` and ``pkeyfile``."""
        return self.directory / "tls.pem"

    @property
    def ca_key_path(self) -> Path:
        return self.directory / "ca.key"

    def read(self) -> certs.Material | None:
        try:
            server = self.server_pem_path.read_bytes()
            bundle = self.ca_bundle_path.read_bytes()
            ca_key = self.ca_key_path.read_bytes()
        except OSError:
            return None
        cert, marker, key = server.partition(b"-----BEGIN PRIVATE KEY-----")
        return certs.Material(ca_bundle=bundle, ca_key=ca_key, cert=cert, key=marker + key)

    def write(self, material: certs.Material) -> None:
        """Write what differs; the CA bundle before the serving certificate that needs it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        current = self.read()
        if current is None or current.ca_bundle != material.ca_bundle:
            _write(self.ca_bundle_path, material.ca_bundle)
        if current is None or current.ca_key != material.ca_key:
            _write(self.ca_key_path, material.ca_key)
        if current is None or (current.cert, current.key) != (material.cert, material.key):
            _write(self.server_pem_path, material.cert + material.key)


class Source(Protocol):
    """Where the material lives; :meth:`sync` renews it if due and updates the local files."""

    files: CertificateFiles

    def sync(self, now: datetime) -> certs.Renewed:
        """Blocking; returns what changed in the local files."""
        ...


def log_renewal(renewed: certs.Renewed, material: certs.Material, hostnames: Sequence[str]) -> None:
    if renewed is certs.Renewed.NOTHING:
        return
    expiry = x509.load_pem_x509_certificate(material.cert).not_valid_after_utc.isoformat()
    what = "CA and serving certificate" if renewed is certs.Renewed.CA else "serving certificate"
    log.info(
        "webhook %s issued for %s, serving certificate valid until %s", what, ", ".join(hostnames), expiry
    )


class LocalSource:
    """Material kept only in the local files: for a single replica (and local runs)."""

    def __init__(
        self,
        files: CertificateFiles,
        *,
        hostnames: Sequence[str],
        ca_validity: timedelta = certs.CA_VALIDITY,
        serving_validity: timedelta = certs.SERVING_VALIDITY,
    ) -> None:
        self.files = files
        self.hostnames = list(dict.fromkeys(hostnames))
        self.ca_validity = ca_validity
        self.serving_validity = serving_validity

    def sync(self, now: datetime) -> certs.Renewed:
        material, renewed = certs.renew(
            self.files.read(),
            hostnames=self.hostnames,
            now=now,
            ca_validity=self.ca_validity,
            serving_validity=self.serving_validity,
        )
        if renewed is not certs.Renewed.NOTHING:
            self.files.write(material)
            log_renewal(renewed, material, self.hostnames)
        return renewed


async def keep_renewed(
    source: Source,
    *,
    on_ca_change: Callable[[], Awaitable[None]] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    max_sleep: float = 300.0,
) -> None:
    """Sync forever: at renewal time, and at least every ``max_sleep`` seconds (other replicas may
    have renewed the shared material; a suspended host or a clock jump is noticed too)."""
    while True:
        material = source.files.read()
        due = certs.next_renewal(material) if material is not None else None
        delay = (due - clock()).total_seconds() if due is not None else 0.0
        await asyncio.sleep(min(max(delay, 1.0), max_sleep))
        try:
            renewed = await asyncio.to_thread(source.sync, clock())
        except Exception:
            log.exception("renewing the webhook certificate failed; retrying")
            continue
        if renewed is certs.Renewed.CA and on_ca_change is not None:
            try:
                await on_ca_change()
            except Exception:
                log.exception("publishing the renewed webhook CA failed")
