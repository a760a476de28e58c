"""One attempt of one fan-out item: ``each.handler`` with ``ctx.item``, or ``each.http`` rendered for it.

The same handler and HTTP job types as whole runs use, so an item behaves like a small run: the
handler gets a :class:`~sundial.jobs.context.JobContext` whose ``item`` is the item, an HTTP item
gets the run's headers plus ``X-Sundial-Item`` (the key: an idempotency key for the receiver,
since delivery is at least once). Templates see ``item``, ``run`` and ``context``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from sundial.jobs.context import Capture, JobContext, JobFailed, RunInfo, SecretReader, redact
from sundial.jobs.fanoutqueue import RunMeta
from sundial.jobs.handler import HandlerJobType
from sundial.jobs.http import HttpJobType
from sundial.jobs.templating import TemplateFailed, render, render_text
from sundial.models.spec import FanoutEach, HttpJob

MAX_ERROR = 2000


class ItemRunner:
    """Runs items on this replica; shares the HTTP session of the operator's ``http`` job type."""

    def __init__(self, http: HttpJobType, read_secret: Any) -> None:
        self._http = http
        self._handler = HandlerJobType()
        self._read_secret = read_secret
        """(namespace, name, key) -> value: secrets of the run's own namespace only."""
        self._each: dict[str, FanoutEach] = {}

    def each(self, run_id: str, meta: RunMeta) -> FanoutEach:
        spec = self._each.get(run_id)
        if spec is None:
            spec = self._each[run_id] = FanoutEach.model_validate(meta.each)
        return spec

    def forget(self, run_id: str) -> None:
        self._each.pop(run_id, None)

    def _context(self, meta: RunMeta, key: str, item: Any) -> JobContext:
        run = dict(meta.run)
        info = RunInfo(
            id=str(run["id"]),
            uid=str(run["uid"]),
            namespace=str(run["namespace"]),
            name=str(run["name"]),
            generation=int(run["generation"]),
            scheduled_for=_instant(run["scheduled_for"]),
            attempt=int(run["attempt"]),
            trigger=str(run["trigger"]),
        )
        namespace = info.namespace
        reader: SecretReader = lambda name, secret_key: self._read_secret(namespace, name, secret_key)  # noqa: E731
        return JobContext(
            run=info,
            context=dict(meta.context),
            capture=Capture(),
            read_secret=reader,
            item=item,
            item_key=key,
        )

    async def run(self, run_id: str, meta: RunMeta, key: str, item: Any) -> str | None:
        """The attempt's error, or ``None`` if it succeeded."""
        ctx = self._context(meta, key, item)
        remaining = meta.deadline - time.time()
        try:
            if remaining <= 0:
                raise JobFailed("the run's timeoutSeconds passed before the item started")
            async with asyncio.timeout(remaining + meta.grace):
                await self._attempt(self.each(run_id, meta), ctx)
        except TimeoutError:
            return "the item ran past the run's timeoutSeconds and the grace period after it"
        except JobFailed as err:
            return _cut(redact(str(err), ctx.secrets_seen))
        except TemplateFailed as err:
            return _cut(str(err))
        except Exception as err:
            return _cut(redact(f"{type(err).__name__}: {err}", ctx.secrets_seen))
        return None

    async def _attempt(self, each: FanoutEach, ctx: JobContext) -> Any:
        if each.handler is not None:
            return await self._handler.run(each.handler, ctx)
        assert each.http is not None
        spec = _rendered(each.http, ctx)
        return await self._http.run(spec, ctx)


def _rendered(spec: HttpJob, ctx: JobContext) -> HttpJob:
    values = {
        "item": ctx.item,
        "context": ctx.context,
        "run": {
            "id": ctx.run.id,
            "namespace": ctx.run.namespace,
            "name": ctx.run.name,
            "scheduledFor": ctx.run.scheduled_for.isoformat(),
            "attempt": ctx.run.attempt,
        },
    }
    where = "spec.job.fanout.each.http"
    url = render_text(spec.url, values, f"{where}.url")
    if not url.startswith(("http://", "https://")):
        raise TemplateFailed(f"{where}.url: renders to {url[:200]!r}, not an http(s) URL")
    headers = {k: render_text(v, values, f"{where}.headers.{k}") for k, v in (spec.headers or {}).items()}
    headers.setdefault("X-Sundial-Item", ctx.item_key or "")
    return spec.model_copy(
        update={"url": url, "headers": headers, "body": render(spec.body, values, f"{where}.body")}
    )


def _cut(message: str) -> str:
    message = message.replace("\x00", "\\0")  # PostgreSQL text holds no NUL: the error must be recordable
    return message if len(message) <= MAX_ERROR else message[: MAX_ERROR - 1] + "…"


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
