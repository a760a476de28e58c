"""``http`` jobs: one HTTP request per attempt; the status code decides success."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from sundial.jobs.context import JobContext, JobFailed

MAX_BODY = 4096
LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
DEFAULT_SUCCESS = (200, 201, 202, 204)


async def _refuse_link_local(url: str) -> None:
    host = urlsplit(url).hostname or ""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None)
    except OSError:
        return  # aiohttp reports the resolution error itself
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address in LINK_LOCAL or (address.version == 6 and address.is_link_local):
            raise JobFailed(
                f"refusing to call link-local address {address} ({host}): metadata endpoints are blocked "
                "unless the operator is started with SUNDIAL_ALLOW_LINK_LOCAL=true"
            )


async def run(
    spec: dict[str, Any], ctx: JobContext, *, session: aiohttp.ClientSession, allow_link_local: bool = False
) -> dict[str, Any]:
    url = spec["url"]
    method = str(spec.get("method") or "POST").upper()
    if not allow_link_local:
        await _refuse_link_local(url)
    headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
    for ref in spec.get("headersFrom") or []:
        key_ref = ref["secretKeyRef"]
        headers[ref["name"]] = await ctx.secret(key_ref["name"], key_ref["key"])
    body = spec.get("body")
    data: str | None = None
    if body is not None:
        if isinstance(body, str):
            data = body
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
    headers.setdefault("X-Sundial-Run", ctx.run.id)
    headers.setdefault("X-Sundial-Slot", ctx.run.scheduled_for.isoformat())
    success = set(spec.get("successStatusCodes") or DEFAULT_SUCCESS)
    timeout = spec.get("timeoutSeconds")
    started = time.monotonic()
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            data=data,
            timeout=aiohttp.ClientTimeout(total=float(timeout)) if timeout else None,
            allow_redirects=False,
        ) as response:
            raw = await response.content.read(MAX_BODY + 1)
            status = response.status
    except TimeoutError as err:
        raise JobFailed(f"{method} {url}: no response within {timeout}s") from err
    except aiohttp.ClientError as err:
        raise JobFailed(f"{method} {url}: {type(err).__name__}: {err}") from err
    text = raw[:MAX_BODY].decode("utf-8", errors="replace")
    result = {
        "statusCode": status,
        "durationMs": round((time.monotonic() - started) * 1000, 1),
        "body": text + ("…(truncated)" if len(raw) > MAX_BODY else ""),
    }
    ctx.capture.info(f"{method} {url} -> {status}")
    if status not in success:
        raise JobFailed(
            f"{method} {url} returned HTTP {status}, expected one of {sorted(success)}", result=result
        )
    return result
