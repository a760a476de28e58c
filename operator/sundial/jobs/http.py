"""``http`` jobs: one HTTP request per attempt; the status code decides success."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Collection, Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from sundial.jobs.base import Finding, JobEnvironment, JobType
from sundial.jobs.context import JobContext, JobFailed, redact
from sundial.models.spec import HttpJob, JobKind

MAX_BODY = 4096
READ_SLACK = 4096
LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")


def is_link_local(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address in LINK_LOCAL or (address.version == 6 and address.is_link_local)


RESOLVED_SECONDS = 10.0
"""How long a host's addresses are reused for the check (aiohttp's own DNS cache keeps them as long)."""

_resolved: dict[str, tuple[float, list[ipaddress.IPv4Address | ipaddress.IPv6Address]]] = {}


async def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The host's addresses: an IP literal as is, a name resolved once per few seconds, not per request.

    A resolution per attempt is a thread-pool round trip each: 10,000 attempts due together
    queue behind a handful of resolver threads before the first request is sent.
    """
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    now = time.monotonic()
    cached = _resolved.get(host)
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return []  # aiohttp reports the resolution error itself
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if len(_resolved) > 1024:
        _resolved.clear()
    _resolved[host] = (now + RESOLVED_SECONDS, addresses)
    return addresses


async def refuse_link_local(url: str) -> None:
    host = urlsplit(url).hostname or ""
    for address in await _addresses(host):
        if is_link_local(address):
            raise JobFailed(
                f"refusing to call link-local address {address} ({host}): metadata endpoints are blocked "
                "unless the operator is started with SUNDIAL_ALLOW_LINK_LOCAL=true"
            )


class HttpJobType(JobType[HttpJob]):
    """One shared aiohttp session for every attempt of every CronConfig."""

    kind = JobKind.HTTP
    model = HttpJob

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._allow_link_local = False

    async def open(self, env: JobEnvironment) -> None:
        self._session = aiohttp.ClientSession()
        self._allow_link_local = env.settings.allow_link_local

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The shared session (fan-out HTTP sources page through it)."""
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, spec: HttpJob, ctx: JobContext) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("the http job type was not opened")
        url, method = spec.url, str(spec.method)
        if not self._allow_link_local:
            await refuse_link_local(url)
        headers = {str(k): str(v) for k, v in (spec.headers or {}).items()}
        for ref in spec.headers_from or ():
            headers[ref.name] = await ctx.secret(ref.secret_key_ref.name, ref.secret_key_ref.key)
        data: str | None = None
        if isinstance(spec.body, str):
            data = spec.body
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        elif spec.body is not None:
            data = json.dumps(spec.body)
            headers.setdefault("Content-Type", "application/json")
        headers.setdefault("X-Sundial-Run", ctx.run.id)
        headers.setdefault("X-Sundial-Slot", ctx.run.scheduled_for.isoformat())
        success = set(spec.success_status_codes)
        started = time.monotonic()
        # No timeout of its own: the attempt's timeoutSeconds (enforced by the engine) bounds it.
        try:
            async with self._session.request(
                method, url, headers=headers, data=data, allow_redirects=False
            ) as response:
                # a little more than is kept: a secret cut in half at the limit is still redacted
                raw = await response.content.read(MAX_BODY + READ_SLACK)
                status = response.status
        except aiohttp.ClientError as err:
            raise JobFailed(f"{method} {url}: {type(err).__name__}: {err}") from err
        text = redact(raw.decode("utf-8", errors="replace"), ctx.secrets_seen)
        truncated = len(text) > MAX_BODY
        text = text[:MAX_BODY]
        result = {
            "statusCode": status,
            "durationMs": round((time.monotonic() - started) * 1000, 1),
            "body": text + ("…(truncated)" if truncated else ""),
        }
        ctx.capture.info(f"{method} {url} -> {status}")
        if status not in success:
            raise JobFailed(
                f"{method} {url} returned HTTP {status}, expected one of {sorted(success)}", result=result
            )
        return result

    def check(self, spec: HttpJob, *, known_handlers: Collection[str] | None) -> Iterable[Finding]:
        host = urlsplit(spec.url).hostname or ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return
        if is_link_local(address):
            yield Finding(
                "spec.job.http.url",
                f"{address} is a link-local (cloud metadata) address: HTTP jobs refuse it unless the "
                "operator runs with SUNDIAL_ALLOW_LINK_LOCAL=true",
                warning=True,
            )
