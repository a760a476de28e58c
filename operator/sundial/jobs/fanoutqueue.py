"""Where fan-out items wait for a worker: the interface, and the in-process queue of a single replica.

The operator's queue is a Redis Stream per run with one consumer group (:mod:`fanoutredis`): every
replica's workers read from it, so a run spreads over replicas, and an entry whose worker died is
claimed again once it has been idle :data:`CLAIM_IDLE_MS`. Entries carry only the item's key; the
item itself and its outcome are in the run history (``cron_run_items``), which decides whether an
attempt may start. ``parallelism`` is enforced where every replica sees it: entries delivered and
not yet acknowledged (the group's pending list) never exceed it.

Without Redis (the embedded default, one replica) :class:`LocalQueue` keeps the same semantics
in memory.
"""

from __future__ import annotations

import abc
import heapq
import itertools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CLAIM_IDLE_MS = 10_000
"""An entry delivered this long ago and not touched since belongs to a dead worker: claimed again."""
TOUCH_SECONDS = 2.0
"""How often a worker tells the queue that its entries are still in hand."""


@dataclass(frozen=True)
class Delivery:
    """One entry handed to a worker."""

    entry: str
    key: str
    takeover: bool
    """Also start the item if it is ``Running``: its worker is gone (a claimed entry, a rebuild)."""


@dataclass(frozen=True)
class RunMeta:
    """What a worker on any replica needs to process the items of a run, as JSON."""

    run: dict[str, Any]
    each: dict[str, Any]
    parallelism: int
    retry: dict[str, Any]
    context: dict[str, Any]
    deadline: float
    """Epoch seconds after which no item of the run starts (the run's ``timeoutSeconds``)."""
    grace: float = 30.0
    """Seconds an item in flight at the deadline may still take (the shutdown grace period)."""


class ItemQueue(abc.ABC):
    """The entries of every fan-out run in progress, shared by all replicas."""

    async def close(self) -> None:  # noqa: B027  (only a networked queue has something to close)
        """Release the connection."""

    @abc.abstractmethod
    async def create(self, run_id: str, meta: RunMeta) -> None:
        """Announce a run to every replica's workers (idempotent: a resumed run calls it again)."""

    @abc.abstractmethod
    async def active(self) -> dict[str, RunMeta]:
        """The runs whose items workers should read now."""

    @abc.abstractmethod
    async def add(self, run_id: str, keys: Sequence[str], *, takeover: bool = False) -> None: ...

    @abc.abstractmethod
    async def read(self, run_id: str, consumer: str, parallelism: int, count: int) -> list[Delivery]:
        """Up to ``count`` new entries, only as many as keep the run's entries in hand ≤ ``parallelism``."""

    @abc.abstractmethod
    async def reclaim(self, run_id: str, consumer: str, count: int) -> list[Delivery]:
        """Entries idle longer than :data:`CLAIM_IDLE_MS` (their worker died), now ``consumer``'s."""

    @abc.abstractmethod
    async def touch(self, run_id: str, consumer: str, entries: Sequence[str]) -> None:
        """Still in hand: not to be claimed by another worker."""

    @abc.abstractmethod
    async def ack(self, run_id: str, entries: Sequence[str]) -> None:
        """Done with these entries (the outcome is recorded)."""

    @abc.abstractmethod
    async def later(self, run_id: str, entry: str, key: str, due: float) -> None:
        """Done with this entry; the item comes back as a new entry at epoch second ``due`` (a retry)."""

    @abc.abstractmethod
    async def promote(self, run_id: str, now: float) -> int:
        """Retries whose time has come back into the stream; returns how many."""

    @abc.abstractmethod
    async def counts(self, run_id: str) -> tuple[int, int, int] | None:
        """(waiting, in hand, delayed) entries; ``None`` if the run's entries are gone (Redis lost them)."""

    @abc.abstractmethod
    async def stop(self, run_id: str) -> None:
        """Hand out no more entries of the run (Replace, timeout); entries in hand may still finish."""

    @abc.abstractmethod
    async def remove(self, run_id: str) -> None:
        """The run is over: forget its entries and stop announcing it."""


@dataclass
class _LocalRun:
    meta: RunMeta
    waiting: deque[tuple[str, str, bool]] = field(default_factory=deque)
    in_hand: dict[str, tuple[str, bool, str, float]] = field(default_factory=dict)
    """entry -> (key, takeover, consumer, last touched)."""
    delayed: list[tuple[float, int, str]] = field(default_factory=list)
    stopped: bool = False


class LocalQueue(ItemQueue):
    """The queue of one operator process (no Redis): the same rules, in memory."""

    def __init__(self) -> None:
        self._runs: dict[str, _LocalRun] = {}
        self._ids = itertools.count(1)

    def _entry(self) -> str:
        return f"{next(self._ids)}-0"

    async def create(self, run_id: str, meta: RunMeta) -> None:
        run = self._runs.get(run_id)
        if run is None:
            self._runs[run_id] = _LocalRun(meta)
        else:
            run.meta, run.stopped = meta, False

    async def active(self) -> dict[str, RunMeta]:
        return {rid: run.meta for rid, run in self._runs.items() if not run.stopped}

    async def add(self, run_id: str, keys: Sequence[str], *, takeover: bool = False) -> None:
        run = self._runs.get(run_id)
        if run is not None:
            run.waiting.extend((self._entry(), key, takeover) for key in keys)

    async def read(self, run_id: str, consumer: str, parallelism: int, count: int) -> list[Delivery]:
        run = self._runs.get(run_id)
        if run is None or run.stopped:
            return []
        out: list[Delivery] = []
        while run.waiting and len(out) < count and len(run.in_hand) < parallelism:
            entry, key, takeover = run.waiting.popleft()
            run.in_hand[entry] = (key, takeover, consumer, time.monotonic())
            out.append(Delivery(entry, key, takeover))
        return out

    async def reclaim(self, run_id: str, consumer: str, count: int) -> list[Delivery]:
        run = self._runs.get(run_id)
        if run is None or run.stopped:
            return []
        cutoff = time.monotonic() - CLAIM_IDLE_MS / 1000
        out: list[Delivery] = []
        for entry, (key, _takeover, _owner, touched) in list(run.in_hand.items()):
            if len(out) >= count:
                break
            if touched < cutoff:
                run.in_hand[entry] = (key, True, consumer, time.monotonic())
                out.append(Delivery(entry, key, True))
        return out

    async def touch(self, run_id: str, consumer: str, entries: Sequence[str]) -> None:
        run = self._runs.get(run_id)
        if run is None:
            return
        for entry in entries:
            held = run.in_hand.get(entry)
            if held is not None:
                run.in_hand[entry] = (held[0], held[1], consumer, time.monotonic())

    async def ack(self, run_id: str, entries: Sequence[str]) -> None:
        run = self._runs.get(run_id)
        if run is not None:
            for entry in entries:
                run.in_hand.pop(entry, None)

    async def later(self, run_id: str, entry: str, key: str, due: float) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.in_hand.pop(entry, None) is not None:
            heapq.heappush(run.delayed, (due, next(self._ids), key))

    async def promote(self, run_id: str, now: float) -> int:
        run = self._runs.get(run_id)
        moved = 0
        while run is not None and run.delayed and run.delayed[0][0] <= now:
            _due, _n, key = heapq.heappop(run.delayed)
            run.waiting.append((self._entry(), key, False))
            moved += 1
        return moved

    async def counts(self, run_id: str) -> tuple[int, int, int] | None:
        run = self._runs.get(run_id)
        return None if run is None else (len(run.waiting), len(run.in_hand), len(run.delayed))

    async def stop(self, run_id: str) -> None:
        run = self._runs.get(run_id)
        if run is not None:
            run.stopped = True

    async def remove(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
