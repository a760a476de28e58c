"""Where a run's fan-out items come from, as batches: never the whole source in memory.

- ``handler``: a registered sync or async generator yielding items or lists of items; a sync one
  is advanced in a worker thread a batch at a time, so it never blocks the event loop.
- ``sql``: the query's rows on a server-side cursor, fetched a batch at a time.
- ``http``: the JSON response's ``itemsPath``; further pages are followed through the response's
  ``Link: <...>; rel="next"`` header (RFC 8288), one page in memory at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import sqlalchemy as sa
from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.ext.parser import parse as parse_jsonpath

from sundial.jobs import registry, sqlresult
from sundial.jobs.context import JobContext, JobFailed
from sundial.jobs.http import refuse_link_local
from sundial.jobs.sql import first_line, prelude
from sundial.jobs.sqlpools import Pools, passwords
from sundial.models.spec import FanoutSource, HandlerJob, HttpSource, SqlJob

BATCH = 500
MAX_PAGE = 64 * 1024 * 1024
"""Largest HTTP source page read: a bigger one is refused rather than exhausting the operator."""
MAX_PAGES = 100_000


def jsonable(value: Any) -> Any:
    """A database value as JSON (an item is a JSON object)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return str(value)


async def _read_page(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body, or ``MAX_PAGE + 1`` bytes of it (``read(n)`` returns only what is buffered)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_PAGE:
            break
    return b"".join(chunks)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _flatten(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


async def batches(
    source: FanoutSource,
    ctx: JobContext,
    *,
    pools: Pools,
    session: aiohttp.ClientSession | None,
    allow_link_local: bool = False,
) -> AsyncIterator[list[Any]]:
    if source.handler is not None:
        async for batch in _handler(source.handler, ctx):
            yield batch
    elif source.sql is not None:
        async for batch in _sql(source.sql, ctx, pools):
            yield batch
    elif source.http is not None:
        if session is None:
            raise RuntimeError("the fan-out job type was not opened")
        async for batch in _http(source.http, ctx, session, allow_link_local):
            yield batch


async def _handler(spec: HandlerJob, ctx: JobContext) -> AsyncIterator[list[Any]]:
    fn = registry.lookup(spec.name)
    if fn is None:
        known = ", ".join(registry.names()) or "none"
        raise JobFailed(
            f"spec.job.fanout.source.handler: no handler registered as {spec.name!r} (known: {known})"
        )
    produced = fn(ctx)
    if inspect.isawaitable(produced):
        produced = await produced
    if hasattr(produced, "__aiter__"):
        batch: list[Any] = []
        async for value in produced:
            batch.extend(_flatten(value))
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    if produced is None or not hasattr(produced, "__iter__") or isinstance(produced, dict | str):
        raise JobFailed(
            f"spec.job.fanout.source.handler: {spec.name!r} returned a {type(produced).__name__}; "
            "a source handler is a generator of items (JSON objects) or lists of them"
        )
    iterator: Iterator[Any] = iter(produced)
    while True:
        batch = await asyncio.to_thread(_take, iterator)
        if not batch:
            return
        yield batch


def _take(iterator: Iterator[Any]) -> list[Any]:
    batch: list[Any] = []
    for value in iterator:
        batch.extend(_flatten(value))
        if len(batch) >= BATCH:
            break
    return batch


async def _sql(spec: SqlJob, ctx: JobContext, pools: Pools) -> AsyncIterator[list[Any]]:
    where = "spec.job.fanout.source.sql"
    ref = spec.connection_secret_ref
    try:
        url = await ctx.secret(ref.name, ref.key)
    except Exception as err:
        raise JobFailed(
            f"{where}.connectionSecretRef (Secret {ctx.run.namespace}/{ref.name} key {ref.key}): "
            f"cannot read it: {type(err).__name__}"
        ) from None
    ctx.secrets_seen.update(passwords(url))
    if spec.query_from is not None:
        qref = spec.query_from.secret_key_ref
        sql = await ctx.secret(qref.name, qref.key)
    else:
        sql = spec.query or ""
    clause = sqlresult.statement(sql)
    params, missing = sqlresult.bind(
        sqlresult.parameter_names(clause), sqlresult.available_parameters(ctx.run, ctx.context)
    )
    if missing:
        raise JobFailed(f"{where}.query: no value for parameter(s) {', '.join(':' + n for n in missing)}")
    try:
        pool = await pools.acquire(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as err:
        raise JobFailed(
            f"{where}.connectionSecretRef: not a usable database URL: {first_line(err)}"
        ) from None
    try:
        conn = await asyncio.to_thread(pool.engine.connect)
        try:
            # like a sql job: one transaction, read-only if asked, bounded by the run's timeout
            await asyncio.to_thread(conn.begin)
            mariadb = bool(getattr(conn.dialect, "is_mariadb", False))
            timeout_ms = ctx.config.timeout_seconds * 1000 if ctx.config is not None else None
            for line in prelude(conn.dialect.name, mariadb, spec.read_only, timeout_ms):
                await asyncio.to_thread(conn.exec_driver_sql, line)
            result = await asyncio.to_thread(
                lambda: conn.execution_options(stream_results=True, yield_per=BATCH).execute(clause, params)
            )
            if not result.returns_rows:
                raise JobFailed(f"{where}.query: the statement returns no rows; a source is a SELECT")
            while True:
                rows = await asyncio.to_thread(result.fetchmany, BATCH)
                if not rows:
                    break
                yield [{str(k): jsonable(v) for k, v in row._mapping.items()} for row in rows]
        except sa.exc.DBAPIError as err:
            raise JobFailed(f"{where}.query: {first_line(err)}") from None
        finally:
            await asyncio.to_thread(conn.close)
    except sa.exc.DBAPIError as err:
        raise JobFailed(f"{where}: cannot connect: {first_line(err)}") from None
    finally:
        pools.release(pool)


async def _http(
    spec: HttpSource, ctx: JobContext, session: aiohttp.ClientSession, allow_link_local: bool
) -> AsyncIterator[list[Any]]:
    where = "spec.job.fanout.source.http"
    try:
        path = parse_jsonpath(spec.items_path)
    except (JsonPathParserError, Exception) as err:
        raise JobFailed(f"{where}.itemsPath: not a JSONPath: {err}") from None
    headers = {str(k): str(v) for k, v in (spec.headers or {}).items()}
    for ref in spec.headers_from or ():
        headers[ref.name] = await ctx.secret(ref.secret_key_ref.name, ref.secret_key_ref.key)
    headers.setdefault("Accept", "application/json")
    headers.setdefault("X-Sundial-Run", ctx.run.id)
    data = None
    if isinstance(spec.body, str):
        data = spec.body
    elif spec.body is not None:
        data = json.dumps(spec.body)
        headers.setdefault("Content-Type", "application/json")
    url: str | None = spec.url
    method = str(spec.method)
    for _page in range(MAX_PAGES):
        if url is None:
            return
        if not allow_link_local:
            await refuse_link_local(url)  # every page: a next link may point anywhere
        try:
            async with session.request(
                method, url, headers=headers, data=data, allow_redirects=False
            ) as resp:
                raw = await _read_page(resp)
                status, link = resp.status, resp.links.get("next")
        except aiohttp.ClientError as err:
            raise JobFailed(f"{where}: {method} {url}: {type(err).__name__}: {err}") from None
        if status not in spec.success_status_codes:
            raise JobFailed(f"{where}: {method} {url} returned HTTP {status}")
        if len(raw) > MAX_PAGE:
            raise JobFailed(
                f"{where}: {url}: a page larger than {MAX_PAGE // (1024 * 1024)} MiB; page the source"
            )
        try:
            body = json.loads(raw)
        except ValueError as err:
            raise JobFailed(f"{where}: {url}: the response is not JSON: {err}") from None
        found = [match.value for match in path.find(body)]
        if not found:
            raise JobFailed(
                f"{where}.itemsPath: {spec.items_path!r} matches nothing in the response of {url}"
            )
        items = found[0] if len(found) == 1 and isinstance(found[0], list) else found
        for i in range(0, len(items), BATCH):
            yield items[i : i + BATCH]
        next_url = link.get("url") if link else None
        if next_url is not None and _origin(str(next_url)) != _origin(spec.url):
            # the request carries the source's headers, secrets included: only to where they were meant for
            raise JobFailed(
                f"{where}: {url} links its next page to another origin ({_origin(str(next_url))}); "
                "a source's pages must be served by the host of its url"
            )
        url = str(next_url) if next_url else None
        if url is not None:
            method, data = "GET", None
    raise JobFailed(f"{where}: more than {MAX_PAGES} pages")
