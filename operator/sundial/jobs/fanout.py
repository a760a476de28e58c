"""``fanout`` jobs: a source yields items, every item runs on its own with its own retries.

The replica that runs the attempt *coordinates* it: it announces the run to every replica's
workers (:mod:`fanoutworkers`), streams the source into the run history and the queue while the
backlog stays under :data:`BACKLOG`, and follows the item counts in the history until every item
has succeeded or is dead-lettered. The history decides; the queue only delivers:

- each item is a row of ``cron_run_items`` (``UNIQUE (run_id, item_key)``), recorded before its
  entry is queued, so a coordinator that dies loses no item: the attempt is resumable, and the
  replica that resumes it runs the source again (known keys are not added twice) unless the
  source had been read to its end;
- an item that the history says is waiting while the queue holds nothing for it (Redis
  restarted, a requeue, a producer that died between the two writes) is queued again.

``Replace`` and a timeout stop handing out the run's items; items in hand
finish (and are recorded) or were never started. At shutdown the attempt is detached like a
Kubernetes Job's: the other replicas' workers go on, and the next coordinator follows it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
import uuid
from collections.abc import Collection, Iterable
from typing import Any

from sundial.jobs import fanoutsource, templating
from sundial.jobs.base import Finding, JobEnvironment, JobType
from sundial.jobs.context import JobContext, JobFailed
from sundial.jobs.fanoutitem import ItemRunner
from sundial.jobs.fanoutqueue import ItemQueue, LocalQueue, RunMeta
from sundial.jobs.fanoutworkers import Workers
from sundial.jobs.http import HttpJobType
from sundial.jobs.itemkeys import BadItem, key_of
from sundial.jobs.itemstore import ItemStore
from sundial.jobs.sql import SqlJobType
from sundial.jobs.sqlpools import Pools
from sundial.models.runs import ItemStatus
from sundial.models.spec import FanoutJob, JobKind
from sundial.retrying import log_fault, retry_call

log = logging.getLogger("sundial.fanout")

BACKLOG = 2000
"""Items queued and not finished beyond which the producer waits: memory stays flat for any source."""
POLL = 0.5
"""How often the coordinator reads the item counts (progress, and whether the run is done)."""
STALL_POLLS = 4
"""Polls in a row with items waiting in the history and none in the queue before they are requeued."""


def counts_of(counts: dict[ItemStatus, int]) -> dict[str, int]:
    """The ``result.items`` and ``status.active[].items`` counts."""
    return {
        "total": sum(counts.values()),
        "succeeded": counts[ItemStatus.SUCCEEDED],
        "failed": counts[ItemStatus.FAILED],
        "deadLettered": counts[ItemStatus.DEAD_LETTERED],
        "pending": counts[ItemStatus.PENDING],
        "running": counts[ItemStatus.RUNNING],
    }


class FanoutJobType(JobType[FanoutJob]):
    kind = JobKind.FANOUT
    model = FanoutJob
    resumable = True

    def __init__(self, queue: ItemQueue | None = None) -> None:
        self._queue_override = queue
        self._queue: ItemQueue | None = None
        self._items: ItemStore | None = None
        self._workers: Workers | None = None
        self._http = HttpJobType()
        self._pools = Pools()
        self._grace = 30.0
        self._allow_link_local = False

    async def open(self, env: JobEnvironment) -> None:
        settings = env.settings
        await self._http.open(env)
        self._items = env.items
        self._grace = settings.shutdown_grace_seconds
        self._allow_link_local = settings.allow_link_local
        if self._queue_override is not None:
            self._queue = self._queue_override
        elif settings.redis_url:
            from sundial.jobs.fanoutredis import RedisQueue

            self._queue = RedisQueue(settings.redis_url)
        else:
            self._queue = LocalQueue()
        if self._items is None or env.kube is None:
            return  # validation-only or a test without a history: runs fail with a clear message
        kube = env.kube
        runner = ItemRunner(self._http, kube.read_secret)
        consumer = f"{settings.replica}:{uuid.uuid4().hex[:8]}"
        self._workers = Workers(
            self._queue, self._items, runner, consumer=consumer, capacity=settings.fanout_workers
        )
        self._workers.start()

    def stopping(self) -> None:
        if self._workers is not None:
            self._workers.quiesce()

    async def close(self) -> None:
        if self._workers is not None:
            await self._workers.stop(self._grace)
            self._workers = None
        if self._queue is not None:
            await self._queue.close()
        await self._http.close()
        self._pools.close()

    async def run(self, spec: FanoutJob, ctx: JobContext) -> Any:
        return await self._coordinate(spec, ctx)

    async def resume(self, spec: FanoutJob, ctx: JobContext) -> Any:
        return await self._coordinate(spec, ctx)

    async def cancel(self, spec: FanoutJob, ctx: JobContext, reason: str) -> None:
        """Replace or timeout: no more items are handed out; those in hand finish and are recorded.

        The engine cancels the attempt's task right after calling this (possibly before this
        runs), so the run's entries are dropped here, not by the coordinator.
        """
        if self._queue is None:
            return
        queue, run_id = self._queue, ctx.run.id
        try:
            await retry_call(
                lambda: queue.stop(run_id), what=f"stopping the items of run {run_id}", attempts=5
            )
            await retry_call(
                lambda: queue.remove(run_id), what=f"removing the queue of run {run_id}", attempts=5
            )
        except Exception as err:  # the workers drop the run once its deadline and grace are long past
            log_fault(f"stopping the items of run {run_id}", err)

    # ------------------------------------------------------------------ coordinating
    def _meta(self, spec: FanoutJob, ctx: JobContext) -> RunMeta:
        run = ctx.run
        timeout = ctx.config.timeout_seconds if ctx.config is not None else 3600
        return RunMeta(
            run={
                "id": run.id,
                "uid": run.uid,
                "namespace": run.namespace,
                "name": run.name,
                "generation": run.generation,
                "scheduled_for": run.scheduled_for.isoformat(),
                "attempt": run.attempt,
                "trigger": run.trigger,
            },
            each=spec.each.model_dump(mode="json", by_alias=True, exclude_none=True),
            parallelism=spec.parallelism,
            retry=spec.item_retry.model_dump(mode="json", by_alias=True),
            context=dict(ctx.context),
            deadline=time.time() + timeout,
            grace=self._grace,
        )

    async def _coordinate(self, spec: FanoutJob, ctx: JobContext) -> Any:
        queue, items = self._queue, self._items
        if queue is None or items is None or self._workers is None:
            raise JobFailed("fan-out jobs need the operator's run history and workers; none are running here")
        run_id, rid = ctx.run.id, uuid.UUID(ctx.run.id)
        progress = await retry_call(
            functools.partial(asyncio.to_thread, items.progress, rid), what="reading a fan-out run's progress"
        )
        complete = isinstance(progress, dict) and bool(progress.get("sourceComplete"))
        meta = self._meta(spec, ctx)
        await retry_call(functools.partial(queue.create, run_id, meta), what="announcing a fan-out run")
        producer = None if complete else asyncio.create_task(self._produce(spec, ctx, queue, items))
        try:
            # cancelled: by Replace or a timeout (cancel() drops the entries) or detached at
            # shutdown (the other replicas' workers go on; the next coordinator resumes)
            counts = await self._follow(ctx, queue, items, producer)
        except asyncio.CancelledError:
            raise
        except BaseException:  # the source failed: the run is over, its items are handed out no more
            await self._forget(run_id)
            raise
        finally:
            if producer is not None and not producer.done():
                producer.cancel()
        await self._forget(run_id)
        shown = counts_of(counts)
        result = {"items": shown, "sourceComplete": True}
        if shown["succeeded"] == shown["total"]:
            ctx.capture.info(f"all {shown['total']} items succeeded")
            return result
        raise JobFailed(
            f"{shown['succeeded']} of {shown['total']} items succeeded, "
            f"{shown['deadLettered']} dead-lettered "
            f"(sundial deadletters {ctx.run.name} -n {ctx.run.namespace})",
            result=result,
        )

    async def _forget(self, run_id: str) -> None:
        if self._queue is not None:
            try:
                await self._queue.remove(run_id)
            except Exception as err:
                log_fault(f"removing the queue of run {run_id}", err)

    async def _follow(
        self, ctx: JobContext, queue: ItemQueue, items: ItemStore, producer: asyncio.Task[None] | None
    ) -> dict[ItemStatus, int]:
        rid = uuid.UUID(ctx.run.id)
        stalled = 0
        while True:
            if producer is not None and producer.done():
                producer.result()  # a source that failed fails the run
            done_producing = producer is None or producer.done()
            asked = time.monotonic()
            try:
                counts = await asyncio.to_thread(items.counts, rid)
            except Exception as err:
                log_fault(f"reading the item counts of run {ctx.run.id}", err)
                await asyncio.sleep(POLL * 4)
                continue
            counting = time.monotonic() - asked
            shown = counts_of(counts)
            ctx.report({"items": shown})
            waiting = shown["pending"] + shown["failed"] + shown["running"]
            if done_producing and waiting == 0:
                return counts
            # only once the source is read: the producer's fresh entries are not duplicated as takeovers
            lost = done_producing and waiting and await self._queue_empty(queue, ctx.run.id)
            stalled = stalled + 1 if lost else 0
            if stalled >= STALL_POLLS:
                stalled = 0
                try:
                    await self._requeue_waiting(ctx, queue, items)
                except Exception as err:  # Redis or the database is out: asked again at the next stall
                    log_fault(f"queueing the waiting items of run {ctx.run.id} again", err)
            # a run of millions of items: counting costs more, so it is asked less often
            await asyncio.sleep(max(POLL, 10 * counting))

    async def _queue_empty(self, queue: ItemQueue, run_id: str) -> bool:
        try:
            counts = await queue.counts(run_id)
        except Exception as err:
            log_fault(f"reading the queue of run {run_id}", err)
            return False
        return counts is None or sum(counts) == 0

    async def _requeue_waiting(self, ctx: JobContext, queue: ItemQueue, items: ItemStore) -> None:
        """Items the history holds as waiting and the queue lost: queued again, page by page."""
        rid, run_id = uuid.UUID(ctx.run.id), ctx.run.id
        counts = await queue.counts(run_id)
        if counts is None:  # the queue itself is gone (Redis lost it, a requeue after the run ended)
            await queue.create(run_id, self._meta_again(ctx))
        elif sum(counts):
            return  # entries appeared since the last look
        # nobody holds an entry of the run: items the history holds as Running are orphans too
        after, total = "", 0
        while True:
            keys = await asyncio.to_thread(items.unfinished, rid, after=after, running=True)
            if not keys:
                break
            await self._room(ctx, queue)
            await queue.add(run_id, keys, takeover=True)
            total += len(keys)
            after = keys[-1]
        if total:
            log.warning("run %s: %d waiting items were not in the queue; queued them again", run_id, total)

    async def _room(self, ctx: JobContext, queue: ItemQueue) -> None:
        """Wait until the run's queue has room under :data:`BACKLOG`; a lost queue is made again first
        (its lost entries are queued again once it runs dry: the history still holds them waiting)."""
        while True:
            counts = await queue.counts(ctx.run.id)
            if counts is None:
                await queue.create(ctx.run.id, self._meta_again(ctx))
                continue
            if counts[0] + counts[2] < BACKLOG:
                return
            await asyncio.sleep(0.05)

    def _meta_again(self, ctx: JobContext) -> RunMeta:
        assert ctx.config is not None and ctx.config.job.fanout is not None
        return self._meta(ctx.config.job.fanout, ctx)

    async def _produce(self, spec: FanoutJob, ctx: JobContext, queue: ItemQueue, items: ItemStore) -> None:
        rid, run_id = uuid.UUID(ctx.run.id), ctx.run.id
        session = self._http.session
        async for batch in fanoutsource.batches(
            spec.source, ctx, pools=self._pools, session=session, allow_link_local=self._allow_link_local
        ):
            try:
                keyed = [(key_of(item, spec.item_key), item) for item in batch]
            except BadItem as err:
                raise JobFailed(f"spec.job.fanout.source: {err}") from None
            await retry_call(functools.partial(self._room, ctx, queue), what="reading the fan-out backlog")
            # an outage of either store waits here (the source waits with it), it does not fail the run
            waiting = await retry_call(
                functools.partial(asyncio.to_thread, items.add, rid, keyed, dt.datetime.now(dt.UTC)),
                what="recording fan-out items",
            )
            await retry_call(functools.partial(queue.add, run_id, waiting), what="queueing fan-out items")
        counts_now = await retry_call(lambda: asyncio.to_thread(items.counts, rid), what="counting items")
        total = sum(counts_now.values())
        await retry_call(
            lambda: asyncio.to_thread(
                items.set_progress, rid, {"items": {"total": total}, "sourceComplete": True}
            ),
            what="recording that the source is read",
        )
        ctx.capture.info(f"the source yielded {total} items")

    # ------------------------------------------------------------------ validation
    def check(self, spec: FanoutJob, *, known_handlers: Collection[str] | None) -> Iterable[Finding]:
        for path, handler in (
            ("spec.job.fanout.source.handler.name", spec.source.handler),
            ("spec.job.fanout.each.handler.name", spec.each.handler),
        ):
            if handler is not None and known_handlers is not None and handler.name not in known_handlers:
                known = ", ".join(sorted(known_handlers)) or "none registered"
                yield Finding(path, f"no handler named {handler.name!r} is registered (known: {known})")
        http = spec.each.http
        if http is not None:
            where = "spec.job.fanout.each.http"
            texts: dict[str, Any] = {
                "url": http.url,
                **{f"headers.{k}": v for k, v in (http.headers or {}).items()},
            }
            texts.update(_strings(http.body, "body"))
            for name, text in texts.items():
                problem = templating.check(text, f"{where}.{name}")
                if problem:
                    path, message = problem.split(": ", 1)
                    yield Finding(path, message)
        # what the http and sql job types say of the same fields, under their fan-out paths
        parts: list[tuple[str, str, Iterable[Finding]]] = []
        if spec.source.http is not None:
            parts.append(
                (
                    "spec.job.http",
                    "spec.job.fanout.source.http",
                    self._http.check(spec.source.http, known_handlers=None),
                )
            )
        if spec.source.sql is not None:
            parts.append(
                (
                    "spec.job.sql",
                    "spec.job.fanout.source.sql",
                    SqlJobType().check(spec.source.sql, known_handlers=None),
                )
            )
        if http is not None:
            parts.append(
                ("spec.job.http", "spec.job.fanout.each.http", self._http.check(http, known_handlers=None))
            )
        for old, new, findings in parts:
            for f in findings:
                path = new + f.path[len(old) :] if f.path.startswith(old) else f.path
                yield Finding(path, f.message, warning=f.warning)


def _strings(value: Any, where: str) -> dict[str, str]:
    """Every string inside a JSON-like body, by its path: each is a template."""
    if isinstance(value, str):
        return {where: value}
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(_strings(v, f"{where}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(_strings(v, f"{where}[{i}]"))
    return out
