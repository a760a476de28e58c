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
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from sundial.store.records import NewRun, RunUpdate
from sundial.store.store import RunStore

log = logging.getLogger(__name__)
T = TypeVar("T")


class History:
    def __init__(self, store: RunStore, *, flush_seconds: float = 0.2, max_batch: int = 500) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sundial-history")
        self._pending: list[RunUpdate] = []
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
        return bool(await self.call(self.store.claim_manual, config_uid, value, run))

    async def last_slots(self, uids: Sequence[str]) -> dict[str, datetime]:
        result: dict[str, datetime] = await self.call(self.store.last_slots, list(uids))
        return result

    def finish(self, update: RunUpdate) -> None:
        """Queue a finished run; written within ``flush_seconds``."""
        self._pending.append(update)
        if len(self._pending) >= self._max_batch:
            self._wakeup.set()

    async def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                await self.call(self.store.finish, batch)
            except Exception:
                log.exception("writing %d finished runs failed; retrying", len(batch))
                self._pending[:0] = batch
                await asyncio.sleep(1.0)
                if self._closed:
                    raise

    async def _flusher(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._flush_seconds)
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
