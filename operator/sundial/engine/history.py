"""Async, batched access to the run history: claims are awaited, finishes are written in batches.

Claims must reach the database before a job executes (the row is the fence), so a due batch of
slots is claimed in one statement. Finished runs are buffered for ``flush_seconds`` and written
together; ``close`` flushes, so nothing is lost on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import sqlalchemy.exc

from sundial.engine.clock import Clock, SystemClock
from sundial.retrying import log_fault, retry_call
from sundial.store.records import NewRun, RunUpdate, SlotTaken
from sundial.store.store import RunStore

log = logging.getLogger(__name__)
T = TypeVar("T")


class History:
    def __init__(
        self,
        store: RunStore,
        *,
        flush_seconds: float = 0.2,
        max_batch: int = 500,
        clock: Clock | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        self._clock: Clock = clock or SystemClock()
        self._pool = executor or ThreadPoolExecutor(max_workers=4, thread_name_prefix="sundial-history")
        self._pending: list[RunUpdate] = []
        self._configs: list[tuple[str, str, str, datetime]] = []
        self._versions: list[tuple[str, int, dict[str, Any]]] = []
        self._flush_seconds = flush_seconds
        self._max_batch = max_batch
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def start(self) -> None:
        self._task = asyncio.create_task(self._flusher(), name="sundial-history-flusher")

    async def claim(self, runs: Sequence[NewRun]) -> set[UUID]:
        if not runs:
            return set()
        result: set[UUID] = await self.call(self.store.claim, list(runs))
        return result

    async def claim_manual(self, config_uid: str, value: str, run: NewRun) -> bool:
        """Fence a run-now value; False if it fired before. :class:`SlotTaken` if the slot is in use."""
        try:
            return bool(await self.call(self.store.claim_manual, config_uid, value, run))
        except sqlalchemy.exc.IntegrityError as err:
            raise SlotTaken(f"slot {run.scheduled_for.isoformat()} of {config_uid} is recorded") from err

    async def last_slots(self, uids: Sequence[str]) -> dict[str, datetime]:
        result: dict[str, datetime] = await self.call(self.store.last_slots, list(uids))
        return result

    def config_seen(self, uid: str, namespace: str, name: str, created: datetime) -> None:
        self._configs.append((uid, namespace, name, created))

    def version_seen(self, uid: str, generation: int, spec: dict[str, Any]) -> None:
        self._versions.append((uid, generation, spec))

    async def start_runs(self, ids: Sequence[UUID], replica: str, at: datetime) -> set[UUID]:
        """The start fence (:meth:`RunStore.start`): which of these claims may run here, now."""
        if not ids:
            return set()
        result: set[UUID] = await self.call(self.store.start, list(ids), replica, at)
        return result

    def finish(self, update: RunUpdate) -> None:
        """Queue a finished run; written within ``flush_seconds``."""
        self._pending.append(update)
        if len(self._pending) >= self._max_batch:
            self._wakeup.set()

    async def flush(self) -> None:
        if self._configs or self._versions:
            configs, self._configs = self._configs, []
            versions, self._versions = self._versions, []
            try:
                await self.call(self.store.record_configs, configs, versions)
            except Exception as err:
                log_fault(f"recording {len(configs)} CronConfigs / {len(versions)} spec versions", err)
                self._configs[:0], self._versions[:0] = configs, versions
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            what = f"writing {len(batch)} finished runs"
            try:  # an outage is waited out here: outcomes are never dropped while the operator runs
                await retry_call(
                    lambda batch=batch: self.call(self.store.finish, batch),  # type: ignore[misc]
                    what=what,
                    attempts=3 if self._closed else None,
                    first_delay=1.0,
                    sleep=self._clock.sleep,
                )
            except Exception as err:
                log_fault(f"{what} (kept for the next flush)", err)
                self._pending[:0] = batch
                if self._closed:
                    raise
                await self._clock.sleep(1.0)

    async def _flusher(self) -> None:
        while not self._closed:
            await self._clock.wait(self._wakeup, self._flush_seconds)
            self._wakeup.clear()
            await self.flush()

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._wakeup.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        self._pool.shutdown(wait=True)
