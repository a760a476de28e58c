"""The few Kubernetes API calls the engine makes, run in worker threads off the event loop."""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "sundial.io", "v1alpha1", "cronconfigs"
log = logging.getLogger(__name__)


class Conflict(Exception):
    """The object changed since we read it (HTTP 409); re-read and merge again."""


class Gone(Exception):
    """The object no longer exists (HTTP 404)."""


def load_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster config when running in a Pod, else the kubeconfig (``$KUBECONFIG`` or given)."""
    cfg = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    cfg.connection_pool_maxsize = 32  # status patches run from many worker threads at once
    return client.ApiClient(cfg)


class Kube:
    """Status patches, Events and Secret reads for the engine."""

    def __init__(self, api_client: client.ApiClient, *, component: str, replica: str) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._component = component
        self._replica = replica

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            obj = await asyncio.to_thread(
                self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as err:
            if err.status == 404:
                raise Gone(f"{namespace}/{name}") from err
            raise
        return cast(dict[str, Any], obj)

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], *, resource_version: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            obj = await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
            )
        except ApiException as err:
            if err.status == 409:
                raise Conflict(f"{namespace}/{name}") from err
            if err.status == 404:
                raise Gone(f"{namespace}/{name}") from err
            raise
        return cast(dict[str, Any], obj)

    async def read_secret(self, namespace: str, name: str, key: str) -> str:
        """Only ever the CronConfig's own namespace: callers bind ``namespace`` to it."""
        secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        data = secret.data or {}
        if key not in data:
            raise KeyError(f"secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()

    async def event(self, obj: dict[str, Any], *, reason: str, message: str, type_: str = "Normal") -> None:
        meta = obj.get("metadata", {})
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{meta.get('name', 'cronconfig')}.", namespace=meta["namespace"]
            ),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind="CronConfig",
                name=meta.get("name"),
                namespace=meta.get("namespace"),
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1000],
            type=type_,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component=self._component, host=self._replica),
            reporting_component=self._component,
            reporting_instance=self._replica[:128],
        )
        try:
            await asyncio.to_thread(self._core.create_namespaced_event, meta["namespace"], body)
        except ApiException as err:  # events are best effort; the run history is the record
            log.warning(
                "could not post event %s for %s/%s: %s",
                reason,
                meta.get("namespace"),
                meta.get("name"),
                err.reason,
            )
