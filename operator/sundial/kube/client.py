"""The few Kubernetes API calls the operator makes.

The hot ones (status reads and patches, up to SUNDIAL_STATUS_QPS per second) go through one
aiohttp session on the event loop; the sync client costs ~7 ms of CPU per call in a worker thread,
and that thread competes with the scheduler for the GIL. Rare calls (Events, Secrets) use the
official client in threads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from sundial import metrics
from sundial.models.resource import API_VERSION, GROUP, KIND, PLURAL, VERSION

log = logging.getLogger(__name__)


class Conflict(Exception):
    """The object changed since we read it (HTTP 409); re-read and merge again."""


class Gone(Exception):
    """The object no longer exists (HTTP 404)."""


class Expired(Exception):
    """A watch's resourceVersion is too old (HTTP 410): list again."""


class ApiError(Exception):
    """Any other refusal of the API server, with its HTTP status and its own message."""

    def __init__(self, status: int, message: str, causes: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.causes = causes or []
        """``details.causes`` of a 422: one entry per invalid field."""

    @property
    def transient(self) -> bool:
        """Worth retrying: the server is overloaded or restarting, not refusing the request."""
        return self.status == 429 or self.status >= 500


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


def _status_message(text: str) -> str:
    """The message of a ``Status`` body (what ``kubectl`` prints), else the body's start."""
    try:
        body = json.loads(text)
    except ValueError:
        return text[:300]
    return str(body.get("message") or "")[:2000] if isinstance(body, dict) else text[:300]


def _resource(path: str) -> str:
    """``jobs`` of ``/apis/batch/v1/namespaces/ns/jobs/name``: the resource a path names."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        return parts[parts.index("namespaces") + 2]
    return parts[-1] if parts else ""


def _status_causes(text: str) -> list[dict[str, Any]]:
    try:
        body = json.loads(text)
    except ValueError:
        return []
    details = body.get("details") if isinstance(body, dict) else None
    causes = details.get("causes") if isinstance(details, dict) else None
    return [c for c in causes if isinstance(c, dict)] if isinstance(causes, list) else []


class Kube:
    """Status patches, Events and Secret reads for the engine."""

    def __init__(self, api_client: client.ApiClient, *, component: str, replica: str) -> None:
        self._cfg: client.Configuration = api_client.configuration
        self._core = client.CoreV1Api(api_client)
        self._component = component
        self._replica = replica
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            cfg = self._cfg
            ctx: ssl.SSLContext | bool = False
            if cfg.verify_ssl:
                ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
                if cfg.cert_file:
                    ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx, limit=32),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _url(self, namespace: str, name: str, sub: str = "") -> str:
        host = str(self._cfg.host).rstrip("/")
        return f"{host}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}{sub}"

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        # the client's own auth settings: bearer tokens (in-cluster ones refreshed as they rotate)
        settings = cast(dict[str, dict[str, Any]], self._cfg.auth_settings())
        for auth in settings.values():
            if auth.get("in") == "header" and auth.get("value"):
                headers[str(auth["key"]).title()] = str(auth["value"])
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def _request(self, method: str, url: str, what: str, body: Any = None) -> dict[str, Any]:
        metrics.KUBE_REQUESTS.labels(
            method, "cronconfigs/status" if url.endswith("/status") else "cronconfigs"
        ).inc()
        data = None if body is None else json.dumps(body)
        ctype = "application/merge-patch+json" if body is not None else None
        async with self._http().request(method, url, data=data, headers=self._headers(ctype)) as response:
            text = await response.text()
            if response.status == 409:
                raise Conflict(what)
            if response.status == 404:
                raise Gone(what)
            if response.status >= 400:  # a 5xx/429 is the server restarting or overloaded: transient
                raise ApiError(response.status, f"{method} {what}: HTTP {response.status}: {text[:300]}")
            return cast(dict[str, Any], json.loads(text))

    async def api(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """Any API call by path (``/apis/batch/v1/...``); errors as Conflict, Gone or ApiError."""
        url = str(self._cfg.host).rstrip("/") + path
        metrics.KUBE_REQUESTS.labels(method, _resource(path)).inc()
        data = None if body is None else json.dumps(body)
        headers = self._headers(content_type if body is not None else None)
        async with self._http().request(method, url, data=data, params=params, headers=headers) as response:
            text = await response.text()
            if response.status < 400:
                return cast(dict[str, Any], json.loads(text)) if text else {}
            message = _status_message(text) or f"HTTP {response.status}"
            if response.status == 409:
                raise Conflict(message)
            if response.status == 404:
                raise Gone(message)
            if response.status == 410:
                raise Expired(message)
            raise ApiError(response.status, f"{method} {path}: {message}", _status_causes(text))

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request, until the server ends it (``timeoutSeconds``)."""
        url = str(self._cfg.host).rstrip("/") + path
        metrics.KUBE_REQUESTS.labels("WATCH", _resource(path)).inc()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=float(params["timeoutSeconds"]) + 30
        )
        async with self._http().get(
            url, params={**params, "watch": "true"}, headers=self._headers(), timeout=timeout
        ) as response:
            if response.status == 410:
                raise Expired(path)
            if response.status >= 400:
                text = await response.text()
                raise ApiError(response.status, f"watch {path}: {_status_message(text) or response.status}")
            async for line in response.content:
                if line.strip():
                    yield cast(dict[str, Any], json.loads(line))

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._request("GET", self._url(namespace, name), f"{namespace}/{name}")

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], *, resource_version: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._request(
            "PATCH", self._url(namespace, name, "/status"), f"{namespace}/{name}", body
        )

    async def read_secret(self, namespace: str, name: str, key: str) -> str:
        """Only ever the CronConfig's own namespace: callers bind ``namespace`` to it."""
        metrics.KUBE_REQUESTS.labels("GET", "secrets").inc()
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
                api_version=API_VERSION,
                kind=KIND,
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
        metrics.KUBE_REQUESTS.labels("POST", "events").inc()
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
