"""What the webhook server needs besides kopf: certificate files, their renewal, the CA bundle's publication.

Three sources of TLS material:

- provided (``SUNDIAL_WEBHOOK_CERT_DIR``): ``tls.crt``/``tls.key``/``ca.crt`` mounted from a Secret
  (cert-manager); whoever wrote them renews them, the server reloads them on change;
- self-signed and shared (``SUNDIAL_WEBHOOK_CERT_SECRET``): one CA and certificate for all replicas,
  kept and renewed in a Secret (:mod:`.secret`), mirrored into a private directory;
- self-signed and local (neither): a private directory only (:class:`.keeper.LocalSource`): one
  replica, or a local run.

With ``SUNDIAL_WEBHOOK_CONFIGURATION`` the CA bundle is kept in that ValidatingWebhookConfiguration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sundial.settings import Settings
from sundial.webhook import inject, keeper

__all__ = ["SERVICE_ACCOUNT_NAMESPACE", "WebhookTLS", "start"]

log = logging.getLogger("sundial.webhook")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class WebhookTLS:
    """The files to hand to the server, and the background tasks that keep them valid and published."""

    certfile: Path
    keyfile: Path
    cafile: Path | None
    private_dir: Path | None = None
    """The self-signed material's directory, removed on :meth:`stop`."""
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)


def _provided(directory: Path) -> WebhookTLS:
    certfile, keyfile, cafile = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    missing = [path.name for path in (certfile, keyfile) if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"SUNDIAL_WEBHOOK_CERT_DIR={directory} lacks {' and '.join(missing)}: mount the webhook's TLS "
            "Secret there, or unset it for a self-signed certificate"
        )
    return WebhookTLS(certfile=certfile, keyfile=keyfile, cafile=cafile if cafile.is_file() else None)


def _namespace(settings: Settings) -> str:
    if settings.pod_namespace:
        return settings.pod_namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        raise RuntimeError(
            "SUNDIAL_WEBHOOK_CERT_SECRET needs SUNDIAL_POD_NAMESPACE (the Secret's namespace)"
        ) from None


async def start(settings: Settings, *, api_client: Any = None) -> WebhookTLS:
    """Prepare the TLS files and start the tasks that renew and publish them.

    ``api_client`` (a ``kubernetes.client.ApiClient``) is used for the Secret and the CA injection;
    ``None`` loads one from the environment when needed.
    """
    if api_client is None and (settings.webhook_configuration or settings.webhook_cert_secret):
        from sundial.kube import load_client

        api_client = load_client()
    injector = (
        inject.CABundleInjector(api_client, configuration=settings.webhook_configuration)
        if settings.webhook_configuration
        else None
    )

    if settings.webhook_cert_dir is not None:
        tls = _provided(settings.webhook_cert_dir)
        log.info("webhook TLS from %s (renewed by its provider)", settings.webhook_cert_dir)
    else:
        directory = Path(tempfile.mkdtemp(prefix="sundial-webhook-"))
        files = keeper.CertificateFiles(directory)
        hostnames = list(dict.fromkeys([settings.webhook_host, "localhost", "127.0.0.1"]))
        source: keeper.Source
        if settings.webhook_cert_secret:
            from sundial.webhook import secret

            namespace = _namespace(settings)
            source = secret.SecretSource(
                api_client,
                namespace=namespace,
                name=settings.webhook_cert_secret,
                files=files,
                hostnames=hostnames,
            )
            where = f"shared in Secret {namespace}/{settings.webhook_cert_secret}"
        else:
            source = keeper.LocalSource(files, hostnames=hostnames)
            where = "kept by this process only"
        try:
            await asyncio.to_thread(source.sync, datetime.now(UTC))
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        tls = WebhookTLS(
            certfile=files.server_pem_path,
            keyfile=files.server_pem_path,
            cafile=files.ca_bundle_path,
            private_dir=directory,
        )

        async def publish() -> None:
            if injector is not None:
                await injector.inject_async(files.ca_bundle_path.read_bytes())

        tls.tasks.append(
            asyncio.create_task(
                keeper.keep_renewed(source, on_ca_change=publish), name="sundial-webhook-certs"
            )
        )
        log.info("webhook TLS self-signed for %s, %s, renewed before expiry", ", ".join(hostnames), where)

    if injector is not None:
        bundle_path = tls.cafile or tls.certfile
        tls.tasks.append(
            asyncio.create_task(
                inject.keep_injected(injector, bundle_path.read_bytes), name="sundial-webhook-cabundle"
            )
        )
    return tls
