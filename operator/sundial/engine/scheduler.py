"""The one scheduler loop for every CronConfig: a heap of next fire times.

Each CronConfig costs one heap entry and one dict slot; nothing runs while nothing is due, and
the loop sleeps exactly until the earliest entry (sub-millisecond wake-ups on an idle loop).
Rescheduling pushes a new entry and bumps the key's version; stale entries are dropped lazily.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime

from sundial.engine.clock import Clock, SystemClock

DueHandler = Callable[[list[Hashable]], Awaitable[None]]


class Scheduler:
    """Fires ``on_due(keys)`` with every key whose time has come, batched per wake-up."""

    def __init__(self, on_due: DueHandler, *, clock: Clock | None = None) -> None:
        self._on_due = on_due
        self._clock: Clock = clock or SystemClock()
        self._heap: list[tuple[float, int, Hashable]] = []
        self._versions: dict[Hashable, int] = {}
        self._seq = itertools.count()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._versions)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._versions

    def schedule(self, key: Hashable, at: datetime | float) -> None:
        when = at.timestamp() if isinstance(at, datetime) else float(at)
        seq = next(self._seq)
        self._versions[key] = seq
        heapq.heappush(self._heap, (when, seq, key))
        if self._heap[0][1] == seq:
            self._changed.set()
        if len(self._heap) > 4 * len(self._versions) + 1024:
            self._compact()

    def cancel(self, key: Hashable) -> None:
        self._versions.pop(key, None)

    def next_time(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def _drop_stale(self) -> None:
        while self._heap and self._versions.get(self._heap[0][2]) != self._heap[0][1]:
            heapq.heappop(self._heap)

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if self._versions.get(e[2]) == e[1]]
        heapq.heapify(self._heap)

    def pop_due(self, now: float) -> list[Hashable]:
        due: list[Hashable] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, key = heapq.heappop(self._heap)
            del self._versions[key]
            due.append(key)

    async def run(self) -> None:
        while True:
            self._changed.clear()
            nxt = self.next_time()
            if nxt is None:
                await self._changed.wait()
                continue
            delay = nxt - self._clock.now().timestamp()
            if delay > 0 and await self._clock.wait(self._changed, delay):
                continue  # an earlier entry arrived: recompute the sleep
            due = self.pop_due(self._clock.now().timestamp())
            if due:
                await self._on_due(due)
