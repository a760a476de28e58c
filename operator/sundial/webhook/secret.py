"""The self-signed webhook material shared by all replicas in one Secret, mirrored into local files.

Every replica computes the same renewal times from the same certificates, so they race to renew: the
write carries the ``resourceVersion`` it read, the first one wins, the others get 409 Conflict and
take the winner's material. The chart creates the (empty) Secret; the operator fills it.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sundial.webhook import certs, keeper

__all__ = ["KEYS", "SecretSource"]

log = logging.getLogger("sundial.webhook")
KEYS = ("ca.crt", "ca.key", "tls.crt", "tls.key")
"""The Secret's keys, in the order of :class:`certs.Material`'s fields."""
_ATTEMPTS = 5


def _decode(data: dict[str, str] | None) -> certs.Material | None:
    if not data or any(key not in data for key in KEYS):
        return None
    try:
        ca_bundle, ca_key, cert, key = (base64.b64decode(data[name], validate=True) for name in KEYS)
    except (binascii.Error, ValueError):
        return None
    return certs.Material(ca_bundle=ca_bundle, ca_key=ca_key, cert=cert, key=key)


def _encode(material: certs.Material) -> dict[str, str]:
    values = (material.ca_bundle, material.ca_key, material.cert, material.key)
    return {name: base64.b64encode(value).decode("ascii") for name, value in zip(KEYS, values, strict=True)}


class SecretSource:
    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        namespace: str,
        name: str,
        files: keeper.CertificateFiles,
        hostnames: Sequence[str],
        ca_validity: timedelta = certs.CA_VALIDITY,
        serving_validity: timedelta = certs.SERVING_VALIDITY,
    ) -> None:
        self._core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.files = files
        self.hostnames = list(dict.fromkeys(hostnames))
        self.ca_validity = ca_validity
        self.serving_validity = serving_validity

    def _load(self) -> tuple[certs.Material | None, str | None]:
        """The material in the Secret (``None`` if absent or incomplete) and its resourceVersion."""
        try:
            secret: Any = self._core.read_namespaced_secret(self.name, self.namespace)
        except ApiException as err:
            if err.status == 404:
                return None, None
            raise
        return _decode(secret.data), secret.metadata.resource_version

    def _save(self, material: certs.Material, resource_version: str | None) -> None:
        if resource_version is None:
            meta = client.V1ObjectMeta(name=self.name, namespace=self.namespace)
            body = client.V1Secret(metadata=meta, type="Opaque", data=_encode(material))
            self._core.create_namespaced_secret(self.namespace, body)
            return
        patch = {"metadata": {"resourceVersion": resource_version}, "data": _encode(material)}
        self._core.patch_namespaced_secret(self.name, self.namespace, patch)

    def sync(self, now: datetime) -> certs.Renewed:
        """Renew the shared material if due (first writer wins), then mirror it into the files."""
        material: certs.Material | None = None
        for _ in range(_ATTEMPTS):
            current, resource_version = self._load()
            material, renewed = certs.renew(
                current,
                hostnames=self.hostnames,
                now=now,
                ca_validity=self.ca_validity,
                serving_validity=self.serving_validity,
            )
            if renewed is certs.Renewed.NOTHING:
                break
            try:
                self._save(material, resource_version)
            except ApiException as err:
                if err.status == 409:  # another replica renewed first: take its material
                    continue
                raise
            keeper.log_renewal(renewed, material, self.hostnames)
            log.info("webhook certificate stored in Secret %s/%s", self.namespace, self.name)
            break
        else:
            raise RuntimeError(f"Secret {self.namespace}/{self.name} kept changing; will retry")
        before = self.files.read()
        if before == material:
            return certs.Renewed.NOTHING
        self.files.write(material)
        if before is None or before.ca_bundle != material.ca_bundle:
            return certs.Renewed.CA
        return certs.Renewed.SERVING
