"""The fan-out job type in process, against real PostgreSQL and Redis: three "replicas" (job-type
instances with their own workers and consumer names) share one run.

What the end-to-end tests in ``test_fanout_operator.py`` show with real operator processes, these
show fast and in detail: exactly-once outcomes against what the item handler saw, the parallelism
limit measured at the handler, dead letters and a requeue, the producer's bounded backlog, and a
Redis flush in the middle of a run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import redis as redis_sync

from sundial.jobs import registry
from sundial.jobs.base import JobEnvironment
from sundial.jobs.context import Capture, JobContext, JobFailed, RunInfo
from sundial.jobs.fanout import BACKLOG, FanoutJobType
from sundial.jobs.fanoutqueue import ItemQueue, LocalQueue
from sundial.jobs.fanoutredis import RedisQueue
from sundial.models.runs import ItemStatus, RunStatus
from sundial.models.spec import CronConfigSpec
from sundial.settings import Settings
from sundial.store import migrate
from sundial.store.items import RunItems
from sundial.store.records import NewRun
from sundial.store.store import RunStore

pytestmark = pytest.mark.asyncio


@dataclass
class Seen:
    """What the item handler saw: every call, every success, and how many ran at once."""

    calls: Counter[str] = field(default_factory=Counter)
    successes: Counter[str] = field(default_factory=Counter)
    running: int = 0
    peak: int = 0
    poisoned: set[str] = field(default_factory=set)
    delay: float = 0.002
    fixed: float | None = None
    """Every item takes exactly this long (seconds), instead of a random part of ``delay``."""


SEEN = Seen()


async def _each(ctx: JobContext) -> None:
    key = str(ctx.item["id"])
    SEEN.calls[key] += 1
    SEEN.running += 1
    SEEN.peak = max(SEEN.peak, SEEN.running)
    try:
        await asyncio.sleep(SEEN.fixed if SEEN.fixed is not None else random.uniform(0, SEEN.delay))
        if key in SEEN.poisoned:
            raise JobFailed(f"item {key} is poisoned")
    finally:
        SEEN.running -= 1
    SEEN.successes[key] += 1


async def _source(ctx: JobContext) -> AsyncIterator[Any]:
    count = int(ctx.context["count"])
    for start in range(0, count, 100):  # batches as lists, and a few single items
        yield [{"id": f"k{i}", "n": i} for i in range(start, min(count, start + 100))]


@pytest.fixture(autouse=True)
def handlers() -> Iterator[None]:
    global SEEN
    SEEN = Seen()
    names = {"fanout-test.each": _each, "fanout-test.source": _source}
    for name, fn in names.items():
        registry.job(name)(fn)
    yield
    for name in names:
        registry._handlers.pop(name, None)


class NoKube:
    async def read_secret(self, namespace: str, name: str, key: str) -> str:
        raise KeyError(key)


@pytest.fixture
def db(fresh_postgres: str) -> Iterator[str]:
    migrate.upgrade(fresh_postgres)
    yield fresh_postgres


def spec(count: int, *, parallelism: int = 7, limit: int = 1) -> CronConfigSpec:
    return CronConfigSpec.model_validate(
        {
            "schedule": "@hourly",
            "timeoutSeconds": 600,
            "context": {"count": count},
            "job": {
                "fanout": {
                    "source": {"handler": {"name": "fanout-test.source"}},
                    "each": {"handler": {"name": "fanout-test.each"}},
                    "parallelism": parallelism,
                    "itemRetry": {"limit": limit, "backoffSeconds": 1},
                }
            },
        }
    )


def claim_run(db: str) -> RunInfo:
    run_id = uuid.uuid4()
    slot = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with RunStore(db) as store:
        store.claim(
            [
                NewRun(
                    id=run_id,
                    config_uid=str(uuid.uuid4()),
                    namespace="ns",
                    name="fan",
                    generation=1,
                    scheduled_for=slot,
                    trigger="Schedule",
                    attempt=1,
                    status=str(RunStatus.RUNNING),
                    started_at=slot,
                    replica="a",
                )
            ]
        )
    return RunInfo(str(run_id), "uid", "ns", "fan", 1, slot, 1, "Schedule")


def context(
    run: RunInfo, config: CronConfigSpec, secrets: dict[tuple[str, str], str] | None = None
) -> JobContext:
    async def read_secret(name: str, key: str) -> str:
        return (secrets or {})[(name, key)]

    return JobContext(
        run=run, context=dict(config.context), capture=Capture(), read_secret=read_secret, config=config
    )


STORES: list[RunStore] = []


async def replicas(db: str, queues: list[ItemQueue], capacity: int = 50) -> list[FanoutJobType]:
    out = []
    store = RunStore(db)
    STORES.append(store)
    for i, queue in enumerate(queues):
        job = FanoutJobType(queue=queue)
        settings = Settings(database_url=db, replica=f"r{i}", fanout_workers=capacity)
        await job.open(
            JobEnvironment(settings=settings, kube=cast(Any, NoKube()), items=RunItems(store.engine))
        )
        out.append(job)
    return out


async def close(jobs: list[FanoutJobType]) -> None:
    for job in jobs:
        await job.close()
    while STORES:
        STORES.pop().close()


async def succeeded(db: str, run: RunInfo, n: int) -> None:
    for _ in range(3000):  # a minute
        if item_rows(db, run)[ItemStatus.SUCCEEDED] >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {n} items succeeded within a minute")


def item_rows(db: str, run: RunInfo) -> dict[ItemStatus, int]:
    with RunStore(db) as store:
        return RunItems(store.engine).counts(uuid.UUID(run.id))


async def test_every_item_succeeds_once_across_three_replicas_within_parallelism(
    db: str, redis_url: str
) -> None:
    jobs = await replicas(db, [RedisQueue(redis_url) for _ in range(3)])
    config = spec(3000, parallelism=7)
    run = claim_run(db)
    try:
        assert config.job.fanout is not None
        result = await asyncio.wait_for(jobs[0].run(config.job.fanout, context(run, config)), 120)
    finally:
        await close(jobs)
    keys = {f"k{i}" for i in range(3000)}
    assert set(SEEN.successes) == keys
    assert max(SEEN.successes.values()) == 1, "an item succeeded twice at the handler"
    assert max(SEEN.calls.values()) == 1, "an item ran twice without a failure"
    assert SEEN.peak <= 7, f"{SEEN.peak} items ran at once; parallelism is 7"
    assert SEEN.peak >= 5, f"parallelism 7 was barely used (peak {SEEN.peak})"
    assert result["items"]["succeeded"] == result["items"]["total"] == 3000
    assert item_rows(db, run)[ItemStatus.SUCCEEDED] == 3000


async def test_the_local_queue_follows_the_same_rules(db: str) -> None:
    jobs = await replicas(db, [LocalQueue()])
    config = spec(500, parallelism=4)
    run = claim_run(db)
    try:
        assert config.job.fanout is not None
        result = await asyncio.wait_for(jobs[0].run(config.job.fanout, context(run, config)), 60)
    finally:
        await close(jobs)
    assert set(SEEN.successes) == {f"k{i}" for i in range(500)} and max(SEEN.successes.values()) == 1
    assert SEEN.peak <= 4
    assert result["items"]["succeeded"] == 500


async def test_a_poisoned_item_is_dead_lettered_then_requeued_and_succeeds(db: str, redis_url: str) -> None:
    jobs = await replicas(db, [RedisQueue(redis_url) for _ in range(2)])
    config = spec(200, parallelism=5, limit=2)
    assert config.job.fanout is not None
    run = claim_run(db)
    SEEN.poisoned = {"k13"}
    try:
        with pytest.raises(JobFailed) as failed:
            await asyncio.wait_for(jobs[0].run(config.job.fanout, context(run, config)), 60)
        assert "199 of 200 items succeeded, 1 dead-lettered" in str(failed.value)
        assert failed.value.result["items"]["deadLettered"] == 1
        assert SEEN.calls["k13"] == 3  # the first attempt and itemRetry.limit=2 retries
        with RunStore(db) as store:
            items = RunItems(store.engine)
            letters = items.dead_letters("ns", "fan")
            assert [(d.key, d.attempts) for d in letters] == [("k13", 3)]
            assert letters[0].error == "item k13 is poisoned" and letters[0].item == {"id": "k13", "n": 13}
            SEEN.poisoned = set()
            moved = items.requeue("ns", "fan", run_id=None, at=dt.datetime.now(dt.UTC), owner="nobody")
            assert moved == {uuid.UUID(run.id): 1}
        result = await asyncio.wait_for(jobs[1].resume(config.job.fanout, context(run, config)), 60)
    finally:
        await close(jobs)
    assert result["items"] == {
        "total": 200,
        "succeeded": 200,
        "failed": 0,
        "deadLettered": 0,
        "pending": 0,
        "running": 0,
    }
    assert SEEN.successes["k13"] == 1 and max(SEEN.successes.values()) == 1
    assert sum(SEEN.calls.values()) == 200 + 3  # the resumed run did not run the source's items again


async def test_the_producer_waits_while_the_backlog_is_full(db: str, redis_url: str) -> None:
    queue = RedisQueue(redis_url)
    jobs = await replicas(db, [queue], capacity=2)
    SEEN.delay = 0.004
    config = spec(12_000, parallelism=2)
    assert config.job.fanout is not None
    run = claim_run(db)
    peak = 0
    task = asyncio.create_task(jobs[0].run(config.job.fanout, context(run, config)))
    try:
        for _ in range(40):
            await asyncio.sleep(0.1)
            counts = await queue.counts(run.id)
            if counts is not None:
                peak = max(peak, counts[0] + counts[1] + counts[2])
        recorded = sum(item_rows(db, run).values())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await close(jobs)
    assert 0 < peak <= BACKLOG + 500, f"the queue held {peak} entries; the producer must wait at {BACKLOG}"
    assert recorded < 12_000, "the whole source was read although the workers were far behind"


async def test_items_survive_redis_being_flushed_mid_run(db: str, redis_url: str) -> None:
    jobs = await replicas(db, [RedisQueue(redis_url) for _ in range(2)])
    SEEN.delay = 0.01
    config = spec(1500, parallelism=10)
    assert config.job.fanout is not None
    run = claim_run(db)
    task = asyncio.create_task(jobs[0].run(config.job.fanout, context(run, config)))
    try:
        await succeeded(db, run, 300)
        redis_sync.Redis.from_url(redis_url).flushall()
        result = await asyncio.wait_for(task, 120)
    finally:
        await close(jobs)
    assert set(SEEN.successes) == {f"k{i}" for i in range(1500)}
    assert result["items"]["succeeded"] == 1500
    # the flush lost the entries in hand: those items may run twice, never more; one success in the history
    assert max(SEEN.calls.values()) <= 2
    assert item_rows(db, run)[ItemStatus.SUCCEEDED] == 1500


def with_source(config: CronConfigSpec, source: dict[str, Any], **fanout: Any) -> CronConfigSpec:
    raw = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["job"]["fanout"].update(source=source, **fanout)
    return CronConfigSpec.model_validate(raw)


async def test_a_sql_source_streams_its_rows_as_items(db: str, redis_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(db)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id int PRIMARY KEY, email text, due boolean)"))
        conn.execute(
            sa.text("INSERT INTO users SELECT g, 'u' || g || '@x', g % 3 = 0 FROM generate_series(1, 3000) g")
        )
    engine.dispose()
    jobs = await replicas(db, [RedisQueue(redis_url)])
    config = with_source(
        spec(0),
        {
            "sql": {
                "connectionSecretRef": {"name": "db", "key": "url"},
                "query": "SELECT 'k' || id AS id, email FROM users WHERE due AND id > :floor ORDER BY id",
            }
        },
    )
    config = config.model_copy(update={"context": {"floor": 0}})
    assert config.job.fanout is not None
    run = claim_run(db)
    try:
        result = await asyncio.wait_for(
            jobs[0].run(config.job.fanout, context(run, config, {("db", "url"): db})), 60
        )
    finally:
        await close(jobs)
    assert result["items"]["succeeded"] == result["items"]["total"] == 1000
    assert set(SEEN.successes) == {f"k{i}" for i in range(3, 3001, 3)}


async def test_an_http_source_follows_its_next_links(db: str, redis_url: str) -> None:
    from aiohttp import web

    pages = 0

    async def page(request: web.Request) -> web.Response:
        nonlocal pages
        pages += 1
        n = int(request.query.get("page", "0"))
        body = {"data": {"items": [{"id": f"k{n * 100 + i}"} for i in range(100)]}}
        headers = {"Link": f'<{base}/due?page={n + 1}>; rel="next"'} if n < 9 else {}
        return web.json_response(body, headers=headers)

    app = web.Application()
    app.add_routes([web.get("/due", page)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    jobs = await replicas(db, [RedisQueue(redis_url)])
    config = with_source(
        spec(0), {"http": {"url": f"{base}/due", "method": "GET", "itemsPath": "$.data.items"}}
    )
    assert config.job.fanout is not None
    run = claim_run(db)
    try:
        result = await asyncio.wait_for(jobs[0].run(config.job.fanout, context(run, config)), 60)
    finally:
        await close(jobs)
        await runner.cleanup()
    assert pages == 10
    assert result["items"]["succeeded"] == 1000
    assert set(SEEN.successes) == {f"k{i}" for i in range(1000)}


async def test_a_stopped_run_hands_out_no_more_items(db: str, redis_url: str) -> None:
    """Replace and timeouts: the engine calls cancel(), then cancels the attempt's task."""
    queues: list[ItemQueue] = [RedisQueue(redis_url) for _ in range(2)]
    jobs = await replicas(db, queues, capacity=4)
    SEEN.delay = 0.05
    config = spec(2000, parallelism=6)
    assert config.job.fanout is not None
    run = claim_run(db)
    ctx = context(run, config)
    task = asyncio.create_task(jobs[0].run(config.job.fanout, ctx))
    try:
        await succeeded(db, run, 50)
        await jobs[0].cancel(config.job.fanout, ctx, "Replaced")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.3)  # items in flight finish (at most parallelism of them)
        calls = sum(SEEN.calls.values())
        await asyncio.sleep(1.0)
        assert sum(SEEN.calls.values()) == calls, "items were still handed out after the run stopped"
        counts = item_rows(db, run)
        assert await queues[1].counts(run.id) is None, "the stopped run's entries are still queued"
        assert run.id not in await queues[1].active()
    finally:
        await close(jobs)
    assert counts[ItemStatus.RUNNING] == 0, "an item in flight was neither finished nor handed back"
    assert counts[ItemStatus.SUCCEEDED] == calls < 2000


async def test_the_embedded_default_sqlite_and_no_redis(tmp_path: Any) -> None:
    """One replica with the embedded defaults: the history in SQLite, the in-process queue."""
    db = f"sqlite:///{tmp_path}/history.db"
    migrate.upgrade(db)
    jobs = await replicas(db, [LocalQueue()])
    SEEN.poisoned = {"k5"}
    config = spec(400, parallelism=5, limit=1)
    assert config.job.fanout is not None
    run = claim_run(db)
    try:
        with pytest.raises(JobFailed, match="399 of 400 items succeeded"):
            await asyncio.wait_for(jobs[0].run(config.job.fanout, context(run, config)), 60)
    finally:
        await close(jobs)
    assert SEEN.peak <= 5 and SEEN.calls["k5"] == 2
    assert item_rows(db, run)[ItemStatus.DEAD_LETTERED] == 1
    assert len(SEEN.successes) == 399 and max(SEEN.successes.values()) == 1


async def test_an_http_source_refuses_the_metadata_endpoint() -> None:
    import aiohttp

    from sundial.jobs import fanoutsource
    from sundial.jobs.sqlpools import Pools
    from sundial.models.spec import FanoutSource

    source = FanoutSource.model_validate({"http": {"url": "http://169.254.169.254/latest/", "method": "GET"}})
    run = RunInfo(
        "00000000-0000-0000-0000-000000000001", "uid", "ns", "fan", 1, dt.datetime.now(dt.UTC), 1, "Manual"
    )
    async with aiohttp.ClientSession() as session:
        with pytest.raises(JobFailed, match=r"refusing to call link-local address 169\.254\.169\.254"):
            async for _ in fanoutsource.batches(
                source, context(run, spec(1)), pools=Pools(), session=session
            ):
                pass


async def test_an_http_source_never_follows_a_next_link_to_another_origin(db: str, redis_url: str) -> None:
    """The source's headers carry its secrets: a page may not send them to another host."""
    from aiohttp import web

    async def page(request: web.Request) -> web.Response:
        other = f"http://localhost:{request.url.port}/due?page=1"  # the same server, another origin
        return web.json_response([{"id": "k1"}], headers={"Link": f'<{other}>; rel="next"'})

    app = web.Application()
    app.add_routes([web.get("/due", page)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    jobs = await replicas(db, [RedisQueue(redis_url)])
    config = with_source(spec(0), {"http": {"url": f"http://127.0.0.1:{port}/due", "method": "GET"}})
    assert config.job.fanout is not None
    run = claim_run(db)
    try:
        with pytest.raises(JobFailed, match="links its next page to another origin"):
            await asyncio.wait_for(jobs[0].run(config.job.fanout, context(run, config)), 30)
        assert run.id not in await jobs[0]._queue.active()  # type: ignore[union-attr]
    finally:
        await close(jobs)
        await runner.cleanup()


async def test_a_stopping_replica_keeps_its_items_until_they_finish(
    db: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown with items that outlast the claim idle time: the stopping replica still touches
    them, so no other replica takes them over; each runs once and its outcome is recorded."""
    from sundial.jobs import fanoutredis, fanoutworkers

    monkeypatch.setattr(fanoutredis, "CLAIM_IDLE_MS", 600)
    monkeypatch.setattr(fanoutworkers, "TOUCH_SECONDS", 0.15)
    jobs = await replicas(db, [RedisQueue(redis_url) for _ in range(2)], capacity=3)
    SEEN.fixed = 1.5  # longer than the idle time: only touching keeps them
    config = spec(12, parallelism=6)
    assert config.job.fanout is not None
    run = claim_run(db)
    task = asyncio.create_task(jobs[0].run(config.job.fanout, context(run, config)))
    try:
        for _ in range(200):
            if SEEN.running >= 6:
                break
            await asyncio.sleep(0.02)
        jobs[1].stopping()  # shutdown begins on replica 1 while it holds three items
        await jobs[1].close()
        result = await asyncio.wait_for(task, 60)
    finally:
        await close([jobs[0]])
    assert max(SEEN.calls.values()) == 1, f"items taken over from a live, stopping replica: {SEEN.calls}"
    assert result["items"]["succeeded"] == 12
