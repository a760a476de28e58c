"""Keep the webhook's CA bundle in a ValidatingWebhookConfiguration created by someone else (the chart).

The chart owns the configuration (service, path, failure policy); the operator owns the certificate,
so it writes ``clientConfig.caBundle`` into every webhook there, like cert-manager's CA injector. A
``helm upgrade`` re-applies the configuration without the bundle: the bundle is re-checked
periodically, not only when it changes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

__all__ = ["CABundleInjector", "keep_injected"]

log = logging.getLogger("sundial.webhook")
GROUP, VERSION, PLURAL = "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations"


class CABundleInjector:
    def __init__(self, api_client: client.ApiClient, *, configuration: str) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self.configuration = configuration

    def inject(self, bundle: bytes) -> int:
        """Write ``bundle`` into every webhook that lacks it; returns how many were patched (blocking)."""
        obj = cast(
            dict[str, Any], self._api.get_cluster_custom_object(GROUP, VERSION, PLURAL, self.configuration)
        )
        encoded = base64.b64encode(bundle).decode("ascii")
        operations: list[dict[str, Any]] = []
        for index, webhook in enumerate(obj.get("webhooks") or []):
            if (webhook.get("clientConfig") or {}).get("caBundle") == encoded:
                continue
            operations += [  # the test guards against a concurrent reordering of the list
                {"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.get("name")},
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded},
            ]
        if operations:
            self._api.patch_cluster_custom_object(
                GROUP,
                VERSION,
                PLURAL,
                self.configuration,
                operations,
                _content_type="application/json-patch+json",
            )
            log.info("CA bundle written into %d webhook(s) of %s", len(operations) // 2, self.configuration)
        return len(operations) // 2

    async def inject_async(self, bundle: bytes) -> None:
        """:meth:`inject` off the event loop; failures are logged, never raised."""
        try:
            await asyncio.to_thread(self.inject, bundle)
        except ApiException as err:
            if err.status == 404:
                log.warning(
                    "ValidatingWebhookConfiguration %s not found: no CA bundle written", self.configuration
                )
            else:
                log.warning(
                    "writing the CA bundle into %s failed: %s %s", self.configuration, err.status, err.reason
                )
        except Exception:
            log.exception("writing the CA bundle into %s failed", self.configuration)


async def keep_injected(
    injector: CABundleInjector, bundle: Callable[[], bytes], *, interval: float = 30.0
) -> None:
    """Inject now and every ``interval`` seconds (one GET when nothing changed)."""
    while True:
        try:
            data = bundle()
        except OSError as err:
            log.warning("cannot read the webhook CA bundle: %s", err)
        else:
            await injector.inject_async(data)
        await asyncio.sleep(interval)
