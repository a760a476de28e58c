"""The fan-out workers of one replica: one loop reads the entries of every run in progress.

Whichever replica coordinates a run, every replica's workers take its items, up to ``capacity``
at once on this replica and ``parallelism`` across all. An entry is acknowledged only after its
outcome is in the run history, so a worker killed at any instant leaves its entries pending, and
they are claimed again once idle; entries in hand are touched so a slow item is never taken from
a live worker. At shutdown no entry is read any more; items in hand may finish within the grace
period, the rest are cancelled and stay pending for another worker (never both).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field

from sundial import metrics
from sundial.jobs.fanoutitem import ItemRunner
from sundial.jobs.fanoutqueue import TOUCH_SECONDS, Delivery, ItemQueue, RunMeta
from sundial.jobs.itemstore import ItemStore
from sundial.models.items import BegunItem, ItemOutcome
from sundial.models.runs import ItemStatus
from sundial.models.spec import ItemRetryPolicy
from sundial.retrying import log_fault

log = logging.getLogger("sundial.fanout")

IDLE_POLL = 0.1
"""How often a replica with runs in progress looks for their entries (one read per run)."""
QUIET_POLL = 0.5
"""How often a replica looks for runs when none is in progress (a new run waits at most this long)."""
RECLAIM_SECONDS = 2.0
ABANDONED_SECONDS = 600.0
"""A run still announced this long after its deadline and grace has no coordinator: its queue goes."""
FLUSH_DELAY = 0.01
"""Outcomes finished within this long of each other are written in one transaction."""


@dataclass
class _Done:
    run_id: str
    delivery: Delivery
    outcome: ItemOutcome
    due: float | None = None
    """When the retry of a failed attempt is due (epoch seconds)."""


@dataclass
class _Batch:
    """Outcomes waiting to be written, and entries waiting to be acknowledged after that."""

    done: list[_Done] = field(default_factory=list)
    acks: list[tuple[str, str]] = field(default_factory=list)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Workers:
    def __init__(
        self, queue: ItemQueue, items: ItemStore, runner: ItemRunner, *, consumer: str, capacity: int
    ) -> None:
        self._queue = queue
        self._items = items
        self._runner = runner
        self.consumer = consumer
        self.capacity = capacity
        self._free = capacity
        self._in_hand: dict[str, set[str]] = {}
        """Entries of each run this replica holds (read and not yet acknowledged)."""
        self._pending = _Batch()
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()
        self._stopping = False
        self._stopping_since = 0.0
        self._items_running: set[asyncio.Task[None]] = set()
        self._writing = asyncio.Lock()
        """Held while outcomes are written, so shutdown never cancels a write halfway."""
        self._reader: asyncio.Task[None] | None = None
        self._toucher: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read_loop(), name="sundial-fanout-read")
        self._toucher = asyncio.create_task(self._touch_loop(), name="sundial-fanout-touch")
        self._flusher = asyncio.create_task(self._flush_loop(), name="sundial-fanout-flush")

    def quiesce(self) -> None:
        """Shutdown began: read no more entries (the items in hand go on, and are still touched)."""
        if not self._stopping:
            self._stopping, self._stopping_since = True, time.monotonic()
            self._wake.set()

    async def stop(self, grace: float) -> None:
        """Items in hand may finish within ``grace`` of :meth:`quiesce`; the rest are cancelled
        (their entries stay pending, claimed again once idle); then every outcome is written."""
        self.quiesce()
        left_over = max(0.0, grace - (time.monotonic() - self._stopping_since))
        if self._items_running:
            log.info("waiting up to %.0fs for %d fan-out items", left_over, len(self._items_running))
            _done, left = await asyncio.wait(set(self._items_running), timeout=left_over)
            for task in left:
                task.cancel()
            if left:
                await asyncio.wait(left, timeout=5)
        for loop in (self._reader, self._toucher):
            if loop is not None:
                loop.cancel()
        async with self._writing:  # the flusher is between writes now: it holds no batch
            if self._flusher is not None:
                self._flusher.cancel()
        try:
            await asyncio.wait_for(self._drain(), timeout=10)
        except TimeoutError:
            log.warning("fan-out outcomes not written before shutdown: their items will run again")
        tasks = [t for t in (self._reader, self._toucher, self._flusher) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self) -> None:
        while self._pending.done or self._pending.acks:
            if not await self._write(self._take()):
                await asyncio.sleep(0.5)  # a store is down: try again until the shutdown gives up

    # ------------------------------------------------------------------ reading
    async def _touch_loop(self) -> None:
        """Its own task: entries in hand are touched whatever reading does, until shutdown is over."""
        failing = False
        while True:
            await asyncio.sleep(TOUCH_SECONDS)
            try:
                await self._touch()
                failing = False
            except Exception as err:
                if not failing:
                    log_fault("touching fan-out items in hand", err)
                failing = True

    async def _read_loop(self) -> None:
        last_reclaim = time.monotonic()
        failing = busy = False
        while not self._stopping:
            try:
                reclaim = time.monotonic() - last_reclaim >= RECLAIM_SECONDS
                busy = await self._read_all(reclaim)
                if reclaim:
                    last_reclaim = time.monotonic()
                failing = False
            except Exception as err:
                if not failing:
                    log_fault("reading fan-out items", err)
                failing = True
                await asyncio.sleep(1.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=IDLE_POLL if busy else QUIET_POLL)

    async def _read_all(self, reclaim: bool) -> bool:
        """Read what every run in progress has for this replica; whether any run is in progress."""
        active = await self._queue.active()
        now = time.time()
        for run_id, meta in list(active.items()):
            if now > meta.deadline + meta.grace + ABANDONED_SECONDS:
                # its coordinator is long gone and nobody recorded an end (a CronConfig deleted meanwhile)
                log.warning("fan-out run %s ended long ago without its queue; removing the queue", run_id)
                await self._queue.remove(run_id)
                del active[run_id]
                continue
            if self._stopping or self._free <= 0 or now > meta.deadline:
                continue
            try:
                got = await self._read_one(run_id, meta, now, reclaim)
            except Exception as err:  # one run's trouble (a Redis error on its keys) is not every run's
                log_fault(f"reading the items of fan-out run {run_id}", err)
                continue
            if got:
                self._hold(run_id, got)
                task = asyncio.create_task(self._batch(run_id, meta, got), name=f"sundial-fanout-{run_id}")
                self._items_running.add(task)
                task.add_done_callback(self._items_running.discard)
        for run_id in list(self._in_hand):
            if run_id not in active and not self._in_hand[run_id]:
                del self._in_hand[run_id]
                self._runner.forget(run_id)
        return bool(active) or any(self._in_hand.values())

    async def _read_one(self, run_id: str, meta: RunMeta, now: float, reclaim: bool) -> list[Delivery]:
        await self._queue.promote(run_id, now)
        want = min(self._free, meta.parallelism)
        got = await self._queue.read(run_id, self.consumer, meta.parallelism, want)
        if reclaim and self._free - len(got) > 0:
            claimed = await self._queue.reclaim(run_id, self.consumer, self._free - len(got))
            held = self._in_hand.get(run_id, set())
            got += [d for d in claimed if d.entry not in held]
        return got

    def _hold(self, run_id: str, got: list[Delivery]) -> None:
        self._in_hand.setdefault(run_id, set()).update(d.entry for d in got)
        self._free -= len(got)
        metrics.FANOUT_IN_FLIGHT.set(self.capacity - self._free)

    def _let_go(self, run_id: str, entries: list[str]) -> None:
        held = self._in_hand.get(run_id, set())
        for entry in entries:
            if entry in held:
                held.discard(entry)
                self._free += 1
        metrics.FANOUT_IN_FLIGHT.set(self.capacity - self._free)
        self._wake.set()

    async def _touch(self) -> None:
        for run_id, entries in list(self._in_hand.items()):
            if entries:
                await self._queue.touch(run_id, self.consumer, sorted(entries))

    # ------------------------------------------------------------------ running
    async def _batch(self, run_id: str, meta: RunMeta, got: list[Delivery]) -> None:
        try:
            await self._run_batch(run_id, meta, got)
        except (
            Exception
        ) as err:  # a bug: the entries are let go (claimed again once idle), never held forever
            log_fault(f"running fan-out items of run {run_id}", err)
            self._let_go(run_id, [d.entry for d in got])

    async def _run_batch(self, run_id: str, meta: RunMeta, got: list[Delivery]) -> None:
        rid = uuid.UUID(run_id)
        fresh = [d.key for d in got if not d.takeover]
        takeover = [d.key for d in got if d.takeover]
        try:
            begun = await asyncio.to_thread(self._items.begin, rid, fresh, takeover, _now())
        except Exception as err:
            log_fault("starting fan-out items", err)
            # not acknowledged: the entries come back once idle, to this replica or another
            self._let_go(run_id, [d.entry for d in got])
            return
        by_key: dict[str, BegunItem] = {b.key: b for b in begun}
        start: list[tuple[Delivery, BegunItem]] = []
        skip: list[str] = []
        for d in got:
            b = by_key.pop(d.key, None)
            if b is None:
                skip.append(d.entry)  # already final, or running elsewhere from another entry
            else:
                start.append((d, b))
        if skip:
            self._pending.acks.extend((run_id, entry) for entry in skip)
            self._flush.set()
        if self._stopping:  # shutdown began while the batch was read: nothing of it ran
            await self._release(run_id, [b for _d, b in start])
            self._let_go(run_id, [d.entry for d, _b in start])
            return
        retry = ItemRetryPolicy.model_validate(meta.retry)
        await asyncio.gather(*(self._one(run_id, meta, retry, d, b) for d, b in start))

    async def _one(
        self, run_id: str, meta: RunMeta, retry: ItemRetryPolicy, d: Delivery, b: BegunItem
    ) -> None:
        try:
            error = await self._runner.run(run_id, meta, b.key, b.item)
        except asyncio.CancelledError:
            # cut off at the end of the grace period: it may have had its effect, so the attempt
            # counts; its entry stays pending and whoever claims it takes the Running item over
            self._let_go(run_id, [d.entry])
            raise
        if error is None:
            outcome, due = ItemOutcome(b.key, b.attempts, ItemStatus.SUCCEEDED), None
        elif b.attempts > retry.limit:
            outcome, due = ItemOutcome(b.key, b.attempts, ItemStatus.DEAD_LETTERED, error), None
        else:
            outcome = ItemOutcome(b.key, b.attempts, ItemStatus.FAILED, error)
            due = time.time() + retry.delay(b.attempts)
        self._pending.done.append(_Done(run_id, d, outcome, due))
        self._flush.set()

    async def _release(self, run_id: str, begun: list[BegunItem]) -> None:
        try:
            await asyncio.to_thread(
                self._items.release, uuid.UUID(run_id), [(b.key, b.attempts) for b in begun], _now()
            )
        except Exception as err:
            log_fault("handing back fan-out items", err)

    # ------------------------------------------------------------------ recording
    async def _flush_loop(self) -> None:
        while True:
            await self._flush.wait()
            await asyncio.sleep(FLUSH_DELAY)
            self._flush.clear()
            async with self._writing:  # taken and written under the lock: shutdown never finds it halfway
                batch = self._take()
                written = await self._write(batch) if batch.done or batch.acks else True
            if not written:
                await asyncio.sleep(1.0)
                self._flush.set()

    def _take(self) -> _Batch:
        batch, self._pending = self._pending, _Batch()
        return batch

    async def _write(self, batch: _Batch) -> bool:
        """Outcomes into the history, then entries out of the queue; what failed waits for the next try."""
        by_run: dict[str, list[_Done]] = {}
        for done in batch.done:
            by_run.setdefault(done.run_id, []).append(done)
        written: list[_Done] = []
        ok = True
        for run_id, dones in by_run.items():
            try:
                applied = await asyncio.to_thread(
                    self._items.end, uuid.UUID(run_id), [d.outcome for d in dones], _now()
                )
            except Exception as err:
                log_fault("recording fan-out item outcomes", err)
                self._pending.done.extend(dones)
                ok = False
                continue
            for d in dones:
                if d.outcome.key in applied:
                    metrics.FANOUT_ITEMS.labels(str(d.outcome.status)).inc()
                    written.append(d)
                else:  # a later attempt took the item over: this outcome no longer counts, and the
                    # entry (claimed by that attempt's worker) is that worker's to acknowledge
                    self._let_go(run_id, [d.delivery.entry])
        for d in written:
            if d.due is not None:
                try:
                    await self._queue.later(d.run_id, d.delivery.entry, d.outcome.key, d.due)
                except Exception as err:
                    log_fault("scheduling a fan-out item retry", err)
                    # recorded Failed, the entry left pending: claimed again once idle, then retried
                self._let_go(d.run_id, [d.delivery.entry])
            else:
                batch.acks.append((d.run_id, d.delivery.entry))
        acks: dict[str, list[str]] = {}
        for run_id, entry in batch.acks:
            acks.setdefault(run_id, []).append(entry)
        for run_id, entries in acks.items():
            try:
                await self._queue.ack(run_id, entries)
            except Exception as err:
                log_fault("acknowledging fan-out items", err)
                self._pending.acks.extend((run_id, e) for e in entries)
                ok = False
                continue
            self._let_go(run_id, entries)
        return ok
