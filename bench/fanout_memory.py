"""Fan-out memory: one run whose source yields 1,000,000 items, in process against real PostgreSQL and Redis.

The ``fanout`` job type claims never to hold the source in memory: the producer stops reading the
source while more than ``BACKLOG`` entries wait in the queue, and workers keep only the entries in
hand. This runs one whole run through it and samples the process RSS every second: a flat RSS
from the first 10,000 items to the last is the claim holding.

One process: ``--replicas`` ``FanoutJobType`` instances (each with its own ``RedisQueue``, engine
and workers, like operator replicas), the first of which coordinates the run. The source handler
is an async generator yielding ``{"id": i, "payload": "x" * 64}`` one by one (``--chunk N``:
in lists of N); ``each`` is a no-op async handler. The benchmark's own bookkeeping is a few
counters and one row per second, never per item.

    .venv/bin/python bench/fanout_memory.py                      # 1,000,000 items
    .venv/bin/python bench/fanout_memory.py --items 20000 --parallelism 200 --workers 200
    .venv/bin/python bench/fanout_memory.py --replicas 2 --json fanout.json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, cast

import redis as redis_sync
from common import ROOT, BenchFailure, rss_mib, run
from tests.support import services

from sundial.jobs import registry
from sundial.jobs.base import JobEnvironment
from sundial.jobs.context import Capture, JobContext, RunInfo
from sundial.jobs.fanout import FanoutJobType
from sundial.jobs.fanoutredis import RedisQueue
from sundial.models.runs import ItemStatus, RunStatus
from sundial.models.spec import CronConfigSpec
from sundial.settings import Settings
from sundial.store import migrate
from sundial.store.items import RunItems
from sundial.store.records import NewRun
from sundial.store.store import RunStore

SOURCE = "bench-fanout.source"
EACH = "bench-fanout.each"
FIRST = 10_000
"""RSS once this many items succeeded is the baseline of the flatness check."""
PAYLOAD = "x" * 64


@dataclass
class Calls:
    """O(1) bookkeeping of the handlers: how many items the source yielded and ``each`` ran."""

    items: int = 0
    chunk: int = 1
    yielded: int = 0
    each: int = 0


CALLS = Calls()


async def _source(ctx: JobContext) -> AsyncIterator[Any]:
    n, chunk = CALLS.items, CALLS.chunk
    if chunk <= 1:
        for i in range(n):
            CALLS.yielded += 1
            yield {"id": i, "payload": PAYLOAD}
        return
    for start in range(0, n, chunk):
        batch = [{"id": i, "payload": PAYLOAD} for i in range(start, min(n, start + chunk))]
        CALLS.yielded += len(batch)
        yield batch


async def _each(ctx: JobContext) -> None:
    CALLS.each += 1


@dataclass(slots=True)
class Sample:
    elapsed: float
    succeeded: int
    rate: float
    rss_mib: float
    redis_mib: float


@dataclass
class Sampler:
    """A background thread: every ``interval`` s the process RSS, the items succeeded, Redis memory.

    Its own engine and Redis connection, so it takes nothing from the pools the job type uses. It
    keeps the peaks and the last row only: the rows go to stdout and to an unnamed temporary file
    (``file``, read back by :meth:`rows` after the run, for ``--json``), so nothing grows in memory.
    """

    db_url: str
    redis_url: str
    run_id: uuid.UUID
    file: IO[str]
    """Where the rows go, one JSON line each."""
    interval: float = 1.0
    peak_rss: float = 0.0
    peak_redis: float = 0.0
    rss_at_first: float | None = None
    succeeded_at_first: int = 0
    elapsed_at_first: float = 0.0
    last: Sample | None = None
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._start = time.monotonic()

    def start(self) -> None:
        self._store = RunStore(self.db_url)
        self._items = RunItems(self._store.engine)
        self._redis = redis_sync.Redis.from_url(self.redis_url)
        self._start = time.monotonic()
        print(
            f"{'elapsed s':>9} {'succeeded':>10} {'items/s':>9} {'RSS MiB':>8} {'redis MiB':>9}", flush=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.sample()  # the end of the run, after the last item
        self._redis.close()
        self._store.close()

    def rows(self) -> list[dict[str, Any]]:
        """Every row of the table, read back from the file (after the run: it is not measured)."""
        self.file.seek(0)
        return [json.loads(line) for line in self.file]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval - (time.monotonic() - self._start) % self.interval):
            self.sample()

    def sample(self) -> None:
        elapsed = time.monotonic() - self._start
        rss = rss_mib(os.getpid())
        try:
            succeeded = self._items.counts(self.run_id)[ItemStatus.SUCCEEDED]
            redis_mib = int(self._redis.info("memory")["used_memory"]) / 2**20
        except Exception as err:  # a slow or failed read is a gap in the table, not the end of the run
            self.errors += 1
            print(f"{elapsed:9.1f} sample failed: {type(err).__name__}: {err}", flush=True)
            return
        prev = self.last
        rate = (
            (succeeded - prev.succeeded) / (elapsed - prev.elapsed)
            if prev is not None and elapsed > prev.elapsed
            else 0.0
        )
        row = Sample(round(elapsed, 1), succeeded, round(rate, 1), round(rss, 1), round(redis_mib, 1))
        self.file.write(json.dumps(asdict(row)) + "\n")
        self.last = row
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_redis = max(self.peak_redis, redis_mib)
        if self.rss_at_first is None and succeeded >= FIRST:
            self.rss_at_first, self.succeeded_at_first, self.elapsed_at_first = rss, succeeded, elapsed
        print(
            f"{row.elapsed:9.1f} {row.succeeded:10d} {row.rate:9.0f} {row.rss_mib:8.1f} {row.redis_mib:9.1f}",
            flush=True,
        )


class NoKube:
    async def read_secret(self, namespace: str, name: str, key: str) -> str:
        raise KeyError(key)


def _spec(args: argparse.Namespace) -> CronConfigSpec:
    return CronConfigSpec.model_validate(
        {
            "schedule": "@hourly",
            "timeoutSeconds": args.timeout,
            "job": {
                "fanout": {
                    "source": {"handler": {"name": SOURCE}},
                    "each": {"handler": {"name": EACH}},
                    "parallelism": args.parallelism,
                }
            },
        }
    )


def _claim(db_url: str) -> RunInfo:
    run_id = uuid.uuid4()
    slot = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with RunStore(db_url) as store:
        store.claim(
            [
                NewRun(
                    id=run_id,
                    config_uid=str(uuid.uuid4()),
                    namespace="bench",
                    name="fanout-memory",
                    generation=1,
                    scheduled_for=slot,
                    trigger="Schedule",
                    attempt=1,
                    status=str(RunStatus.RUNNING),
                    started_at=slot,
                    replica="bench-0",
                )
            ]
        )
    return RunInfo(str(run_id), "uid", "bench", "fanout-memory", 1, slot, 1, "Schedule")


async def _no_secret(name: str, key: str) -> str:
    raise KeyError(key)


async def _bench(args: argparse.Namespace, db_url: str, redis_url: str) -> dict[str, Any]:
    config = _spec(args)
    fanout = config.job.fanout
    assert fanout is not None
    stores = [RunStore(db_url) for _ in range(args.replicas)]
    jobs: list[FanoutJobType] = []
    for i, store in enumerate(stores):
        job = FanoutJobType(queue=RedisQueue(redis_url))
        settings = Settings(
            database_url=db_url, redis_url=redis_url, replica=f"bench-{i}", fanout_workers=args.workers
        )
        await job.open(
            JobEnvironment(settings=settings, kube=cast(Any, NoKube()), items=RunItems(store.engine))
        )
        jobs.append(job)
    info = _claim(db_url)
    ctx = JobContext(run=info, context={}, capture=Capture(), read_secret=_no_secret, config=config)
    rss_before = rss_mib(os.getpid())
    with tempfile.TemporaryFile("w+") as rows:
        sampler = Sampler(db_url, redis_url, uuid.UUID(info.id), rows)
        sampler.start()
        t0 = time.monotonic()
        try:
            result = await asyncio.wait_for(jobs[0].run(fanout, ctx), args.timeout)
            duration = time.monotonic() - t0
        finally:
            sampler.stop()
            hwm = rss_mib(os.getpid(), "VmHWM:")
            for job in jobs:
                await job.close()
            for store in stores:
                store.close()
        samples = sampler.rows()
    shown = result["items"]
    if shown["succeeded"] != args.items or shown["total"] != args.items:
        raise BenchFailure(f"expected {args.items} items to succeed, the run says {shown}")
    if CALLS.yielded != args.items:
        raise BenchFailure(f"the source yielded {CALLS.yielded} items, expected {args.items}")
    end = sampler.last
    assert end is not None
    at_first = sampler.rss_at_first
    steady = (
        (end.succeeded - sampler.succeeded_at_first) / (end.elapsed - sampler.elapsed_at_first)
        if at_first is not None and end.elapsed > sampler.elapsed_at_first
        else None
    )
    return {
        "items": args.items,
        "succeeded": shown["succeeded"],
        "each_calls": CALLS.each,
        "duration_s": round(duration, 1),
        "items_per_s": round(args.items / duration, 1),
        "items_per_s_after_first_10k": None if steady is None else round(steady, 1),
        "rss_before_run_mib": round(rss_before, 1),
        "rss_peak_sampled_mib": round(sampler.peak_rss, 1),
        "rss_hwm_mib": round(hwm, 1),
        "rss_at_10k_mib": None if at_first is None else round(at_first, 1),
        "succeeded_at_10k_sample": sampler.succeeded_at_first,
        "rss_end_mib": end.rss_mib,
        "rss_growth_10k_to_end_mib": None if at_first is None else round(end.rss_mib - at_first, 1),
        "redis_peak_mib": round(sampler.peak_redis, 1),
        "sample_errors": sampler.errors,
        "samples": samples,
    }


def _report(results: dict[str, Any]) -> None:
    r = results
    print()
    print(f"items: {r['items']} succeeded: {r['succeeded']} each() calls: {r['each_calls']}")
    print(f"duration: {r['duration_s']:.1f} s, {r['items_per_s']:.0f} items/s", end="")
    if r["items_per_s_after_first_10k"] is not None:
        print(f" ({r['items_per_s_after_first_10k']:.0f} items/s after the first 10,000)")
    else:
        print()
    print(f"RSS before the run: {r['rss_before_run_mib']:.1f} MiB")
    print(f"peak RSS: {r['rss_peak_sampled_mib']:.1f} MiB sampled, {r['rss_hwm_mib']:.1f} MiB VmHWM")
    if r["rss_at_10k_mib"] is not None:
        print(
            f"RSS at {r['succeeded_at_10k_sample']} items: {r['rss_at_10k_mib']:.1f} MiB, "
            f"at the end: {r['rss_end_mib']:.1f} MiB ({r['rss_growth_10k_to_end_mib']:+.1f} MiB)"
        )
    else:
        print(f"RSS at the end: {r['rss_end_mib']:.1f} MiB (fewer than {FIRST} items: no flatness check)")
    print(f"Redis used_memory peak: {r['redis_peak_mib']:.1f} MiB")


def _revision() -> str:
    """The commit measured, and whether operator/ differs from it (others edit while benchmarks run)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "operator"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (operator/ modified)" if dirty else head


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000, help="items the source yields")
    parser.add_argument("--parallelism", type=int, default=200, help="spec.job.fanout.parallelism (1..1000)")
    parser.add_argument("--workers", type=int, default=200, help="SUNDIAL_FANOUT_WORKERS of each replica")
    parser.add_argument("--replicas", type=int, default=1, help="FanoutJobType instances in this process")
    parser.add_argument(
        "--chunk", type=int, default=1, help="the source yields lists of this many (1: one by one)"
    )
    parser.add_argument("--timeout", type=int, default=7200, help="the run's timeoutSeconds")
    parser.add_argument("--json", type=Path, help="write the results (and the per-second samples) here")
    args = parser.parse_args()
    if args.items < 1 or args.replicas < 1 or not 1 <= args.parallelism <= 1000:
        parser.error("--items and --replicas must be positive, --parallelism within 1..1000")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    CALLS.items, CALLS.chunk = args.items, args.chunk
    registry.job(SOURCE)(_source)
    registry.job(EACH)(_each)
    machine = f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, kernel {platform.release()}"
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    print(f"machine: {machine}, python {platform.python_version()}")
    revision = _revision()
    print(f"date: {started}, sundial at {revision}")
    print(
        f"items={args.items} parallelism={args.parallelism} workers={args.workers} "
        f"replicas={args.replicas} chunk={args.chunk}",
        flush=True,
    )
    with services.postgres() as pg, services.redis() as redis_url:
        migrate.upgrade(pg.url)
        results = asyncio.run(_bench(args, pg.url, redis_url))
    _report(results)
    if args.json:
        doc = {
            "machine": machine,
            "date": started,
            "args": {k: str(v) for k, v in vars(args).items()},
            **results,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results: {args.json}")


if __name__ == "__main__":
    run(main)
