"""Async, batched access to the run history, with a journal in Redis while PostgreSQL is down.

Claims and starts are awaited (the row is the fence, so it must be written before a job runs);
outcomes are buffered for ``flush_seconds`` and written together. When the database is
unreachable, every write goes to the journal instead (:mod:`sundial.store.journal`), durably and
in order, and any replica writes it to the database once it is back; a run whose claim went to
the journal keeps writing there, so its start and outcome are never applied before its claim.
Reads that decide about slots (:meth:`consistent`) wait until the journal is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import sqlalchemy.exc

from sundial.engine.clock import Clock, SystemClock
from sundial.retrying import is_transient, log_fault
from sundial.store.journal import Entry, Journal, Start
from sundial.store.records import NewRun, RunUpdate, SlotTaken
from sundial.store.store import RunStore

log = logging.getLogger(__name__)
T = TypeVar("T")

DOWN_SECONDS = 2.0
"""After a failed write, how long writes go straight to the journal before the database is tried again."""
DRAIN_BATCH = 2000
"""Journal entries written to the database in one transaction."""
DRAIN_LOCK_SECONDS = 5.0
"""How long a drainer that died blocks the others (renewed after every batch while it writes)."""
JOURNAL_CHECK_SECONDS = 5.0
"""How often a replica looks for journal entries others left (a replica that died during an outage)."""


class HistoryClosed(RuntimeError):
    """A write asked for after shutdown closed the history: its run is settled by the next operator."""

    transient = True


class StoreUnavailable(Exception):
    """Neither the database nor the journal could take a write: nothing may run unrecorded."""


class History:
    def __init__(
        self,
        store: RunStore,
        *,
        journal: Journal | None = None,
        flush_seconds: float = 0.2,
        max_batch: int = 500,
        clock: Clock | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        self.journal = journal
        self._clock: Clock = clock or SystemClock()
        self._pool = executor or ThreadPoolExecutor(max_workers=4, thread_name_prefix="sundial-history")
        self._pending: list[RunUpdate] = []
        self._later: list[NewRun] = []
        """Skips decided while no store was reachable (``StoreUnavailable``): recorded once one is."""
        self._configs: list[tuple[str, str, str, datetime]] = []
        self._versions: list[tuple[str, int, dict[str, Any]]] = []
        self._journaled: set[UUID] = set()
        """Unfinished runs whose claim or start went to the journal: the rest of their writes follow."""
        self._down_until = float("-inf")
        self._outage = False
        self._failing = False
        self._retry_at = float("-inf")
        self._journal_check = float("-inf")
        self._flush_seconds = flush_seconds
        self._max_batch = max_batch
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._token = uuid.uuid4().hex
        self._closed = False
        self._pool_closed = False

    async def call(self, fn: Any, *args: Any) -> Any:
        if self._pool_closed:
            raise HistoryClosed("the run history is closed: the operator is shutting down")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def start(self) -> None:
        self._task = asyncio.create_task(self._flusher(), name="sundial-history-flusher")

    # ------------------------------------------------------------------ the database, else the journal
    @property
    def database_down(self) -> bool:
        return self._clock.monotonic() < self._down_until

    def _went_down(self, what: str, err: BaseException) -> None:
        if not self._outage:  # one line per outage: the database is tried again every DOWN_SECONDS
            where = "the Redis journal" if self.journal is not None else "memory"
            log_fault(f"{what} in the run history (writing to {where} until it is back)", err)
        self._outage = True
        self._down_until = self._clock.monotonic() + DOWN_SECONDS

    def _came_back(self) -> None:
        if self._outage:
            log.warning("the run history is reachable again")
        self._outage = False

    async def _to_journal(self, entries: Sequence[Entry], cause: BaseException | None) -> None:
        if self.journal is None:
            raise StoreUnavailable("the run history is unreachable and there is no Redis journal") from cause
        try:
            await self.journal.append(entries)
        except Exception as err:
            if not is_transient(err):
                raise
            raise StoreUnavailable(f"the run history and Redis are both unreachable ({err})") from err
        self._journal_check = float("-inf")  # drain as soon as the database is back

    async def _direct(self, fn: Any, *args: Any, what: str) -> tuple[Any, BaseException | None]:
        """(result, None) from the database, or (None, error) if it is down (known or found now)."""
        if self.database_down:
            return None, None
        try:
            result = await self.call(fn, *args)
        except Exception as err:
            if not is_transient(err) or self.journal is None:
                raise
            self._went_down(what, err)
            return None, err
        self._came_back()
        return result, None

    async def claim(self, runs: Sequence[NewRun]) -> set[UUID]:
        """The claim fence; while the database is down, the journal (the slot's lease is the fence)."""
        if not runs:
            return set()
        inserted, err = await self._direct(self.store.claim, list(runs), what=f"claiming {len(runs)} runs")
        if err is None and inserted is not None:
            return set(inserted)
        await self._to_journal(runs, err)
        self._journaled.update(run.id for run in runs if run.finished_at is None)
        return {run.id for run in runs}

    async def start_runs(self, ids: Sequence[UUID], replica: str, at: datetime) -> set[UUID]:
        """The start fence (:meth:`RunStore.start`): which of these claims may run here, now."""
        direct = [i for i in ids if i not in self._journaled]
        journaled = [i for i in ids if i in self._journaled]
        started: set[UUID] = set()
        err: BaseException | None = None
        if direct:
            result, err = await self._direct(
                self.store.start, direct, replica, at, what=f"recording {len(direct)} starts"
            )
            if result is not None:
                started, direct = set(result), []
        rest = journaled + direct
        if rest:
            # no replica adopts a claim while the journal holds writes, so these are still ours
            await self._to_journal([Start(i, at) for i in rest], err)
            self._journaled.update(rest)
            started.update(rest)
        return started

    async def claim_manual(self, config_uid: str, value: str, run: NewRun) -> bool:
        """Fence a run-now value; False if it fired before. :class:`SlotTaken` if the slot is in use."""
        try:
            return bool(await self.call(self.store.claim_manual, config_uid, value, run))
        except sqlalchemy.exc.IntegrityError as err:
            raise SlotTaken(f"slot {run.scheduled_for.isoformat()} of {config_uid} is recorded") from err

    async def last_slots(self, uids: Sequence[str]) -> dict[str, datetime]:
        result: dict[str, datetime] = await self.call(self.store.last_slots, list(uids))
        return result

    async def consistent(self) -> bool:
        """Whether the database holds every write (nothing waits in the journal): safe to decide on."""
        if self.journal is None:
            return True
        try:
            return await self.journal.length() == 0
        except Exception as err:
            log_fault("looking at the run-history journal", err, level=logging.DEBUG)
            return False

    # ------------------------------------------------------------------ buffered writes
    def config_seen(self, uid: str, namespace: str, name: str, created: datetime) -> None:
        self._configs.append((uid, namespace, name, created))

    def version_seen(self, uid: str, generation: int, spec: dict[str, Any]) -> None:
        self._versions.append((uid, generation, spec))

    def finish(self, update: RunUpdate) -> None:
        """Queue a finished run; written within ``flush_seconds``."""
        self._pending.append(update)
        if len(self._pending) >= self._max_batch:
            self._wakeup.set()

    def record_later(self, runs: Sequence[NewRun]) -> None:
        """Final rows (skips) that could not be written now: written once a store is reachable."""
        self._later.extend(runs)

    async def flush(self) -> None:
        await self._flush_configs()
        if self._later:
            later, self._later = self._later, []
            try:
                await self.claim(later)
            except Exception as err:
                log_fault(f"recording {len(later)} slots skipped while no store was reachable", err)
                self._later[:0] = later
        while self._pending and self._clock.monotonic() >= self._retry_at:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            if not await self._flush_outcomes(batch):
                self._pending[:0] = batch
                return
        if self.journal is not None and not self.database_down and self._drainer is None:
            # in a task of its own: outcomes keep flushing while a long journal is written
            self._drainer = asyncio.create_task(self._drain_if_due(), name="sundial-history-drain")
            self._drainer.add_done_callback(self._drained)

    async def _flush_configs(self) -> None:
        if not (self._configs or self._versions) or self.database_down:
            return
        configs, self._configs = self._configs, []
        versions, self._versions = self._versions, []
        try:
            await self.call(self.store.record_configs, configs, versions)
        except Exception as err:
            log_fault(f"recording {len(configs)} CronConfigs / {len(versions)} spec versions", err)
            self._configs[:0], self._versions[:0] = configs, versions

    async def _flush_outcomes(self, batch: list[RunUpdate]) -> bool:
        """Write one batch of outcomes, to the database or the journal; False if neither took it."""
        direct = [u for u in batch if u.id not in self._journaled]
        err: BaseException | None = None
        try:
            if direct:
                written, err = await self._direct(
                    self.store.finish, direct, what=f"writing {len(direct)} outcomes"
                )
                if written is not None:
                    direct = []
            rest = [u for u in batch if u.id in self._journaled] + direct
            if rest:
                await self._to_journal(rest, err)
                self._journaled.difference_update(u.id for u in rest)
        except Exception as err:
            if not self._failing:  # one line per outage, not one per flush
                log_fault(f"writing {len(batch)} outcomes (kept, written once a store is back)", err)
            self._failing = True
            self._retry_at = self._clock.monotonic() + 1.0
            return False
        if self._failing:
            log.warning("outcomes are recorded again")
            self._failing = False
        return True

    # ------------------------------------------------------------------ the journal, back into the database
    async def _drain_if_due(self) -> None:
        now = self._clock.monotonic()
        if now < self._journal_check:
            return
        self._journal_check = now + JOURNAL_CHECK_SECONDS
        try:
            await self.drain()
        except sqlalchemy.exc.SQLAlchemyError as err:
            if not is_transient(err):
                raise
            self._went_down("writing the journal", err)
        except Exception as err:  # Redis (the journal itself): tried again at the next check
            log_fault("reading the run-history journal", err)

    def _drained(self, task: asyncio.Task[None]) -> None:
        self._drainer = None

    async def drain(self) -> int:
        """Write every journal entry to the database, oldest first; returns how many were written.

        One replica at a time (a lock in Redis); the others find the journal empty afterwards.
        """
        assert self.journal is not None
        total = 0
        if not await self.journal.lock(self._token, DRAIN_LOCK_SECONDS):
            return 0
        try:
            while entries := await self.journal.read(DRAIN_BATCH):
                await self.call(_apply, self.store, [entry for _, entry in entries])
                await self.journal.remove([entry_id for entry_id, _ in entries])
                total += len(entries)
                await self.journal.lock(self._token, DRAIN_LOCK_SECONDS)
        finally:
            await self.journal.unlock(self._token)
        if total:
            log.warning("the run history is back: wrote %d journaled entries to it", total)
        return total

    async def _flusher(self) -> None:
        while not self._closed:
            await self._clock.wait(self._wakeup, self._flush_seconds)
            self._wakeup.clear()
            await self.flush()

    async def close(self) -> None:
        self._closed = True
        for task in (self._task, self._drainer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for _ in range(3):
            self._retry_at = float("-inf")
            await self.flush()
            if not (self._pending or self._later):
                break
            await self._clock.sleep(1.0)
        if self._pending or self._later:
            log.error(
                "%d outcomes and %d skips could not be recorded at shutdown: no store was reachable",
                len(self._pending),
                len(self._later),
            )
        self._pool_closed = True
        self._pool.shutdown(wait=True)
        if self.journal is not None:
            await self.journal.close()


def _apply(store: RunStore, entries: list[Entry]) -> None:
    """Journal entries into the database: claims, then starts, then outcomes of the batch.

    The same order as the stream for every run (its claim precedes its start, which precedes
    its outcome), in three statements instead of one per stretch of entries of one kind.
    """
    store.claim([e for e in entries if isinstance(e, NewRun)])
    store.mark_started([(e.id, e.at) for e in entries if isinstance(e, Start)])
    store.finish([e for e in entries if isinstance(e, RunUpdate)])
