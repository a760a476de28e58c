"""Every retry rule in one place: which outcomes retry, how often, when, and how a retry survives.

A retry is recorded (``Pending``, trigger ``Retry``, attempt n+1) as soon as it is decided, not
when its backoff ends, and its due time goes to Redis next to the row. So it survives this
replica: after a crash another replica adopts the row and runs it at the due time; a restart of
this replica finds it again. ``retry.limit`` counts retries per slot; the backoff doubles per
retry up to ``maxBackoffSeconds`` (:meth:`sundial.models.spec.RetryPolicy.delay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from sundial.engine.clock import Timer, parse_time
from sundial.engine.core import Core
from sundial.engine.recording import Recording
from sundial.engine.tracked import Claim, SlotWork, Tracked
from sundial.leases import keys
from sundial.models.runs import RunReason, RunStatus, Trigger
from sundial.models.spec import CronConfigSpec
from sundial.retrying import log_fault
from sundial.store.records import NewRun

log = logging.getLogger("sundial.engine")

RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})
"""Outcomes that earn a retry; Cancelled (replaced, shut down) and Skipped never do."""
RECENT_SECONDS = 60.0
"""How long a fired retry counts as ours although its row may still read Pending."""


def retry_due(spec: CronConfigSpec | None, attempt: int, status: RunStatus, now: datetime) -> datetime | None:
    """When attempt ``attempt + 1`` should start after ``attempt`` ended with ``status``; None: never."""
    if spec is None or status not in RETRYABLE or attempt > spec.retry.limit:
        return None
    return now + timedelta(seconds=spec.retry.delay(attempt))


class Retries:
    def __init__(self, core: Core, recording: Recording) -> None:
        self.core = core
        self.recording = recording
        self.fire: Callable[[list[Claim]], Coroutine[Any, Any, None]] = _unwired
        """Set by the engine: fire a batch of claimed attempts now."""
        self._waiting: dict[uuid.UUID, tuple[SlotWork, NewRun, Timer | None]] = {}
        """Retry attempts recorded Pending, waiting for their backoff to end."""
        self._recent: dict[uuid.UUID, float] = {}
        """Retries fired lately: their rows may still read Pending until the history flush."""
        self._recording: set[asyncio.Task[Any]] = set()

    def after(self, tracked: Tracked, slot: datetime, attempt: int, status: RunStatus) -> None:
        """An attempt of ``slot`` ended with ``status`` (here, or taken over): retry if the spec says so."""
        due = retry_due(tracked.spec, attempt, status, self.core.clock.now())
        if due is None:
            return
        task = self.core.spawn(
            self._record(tracked, slot, attempt + 1, due), name=f"sundial-retry-{tracked.key}"
        )
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record(self, tracked: Tracked, slot: datetime, attempt: int, due: datetime) -> None:
        core = self.core
        w = SlotWork(tracked, slot, attempt, Trigger.RETRY)
        run = self.recording.new_run(tracked, slot, attempt, Trigger.RETRY, RunStatus.PENDING)
        self._waiting[run.id] = (w, run, None)
        try:
            # the failed attempt's outcome first: a crash right after must not leave it Running
            # (reaped as OwnerLost) beside a durable retry
            await core.history.flush()
            inserted = await core.history.claim([run])
        except Exception as err:
            log_fault(f"[{tracked.key}] recording retry attempt {attempt} (not run: StoreUnavailable)", err)
            core.history.record_later(
                [
                    dataclasses.replace(
                        run, status=str(RunStatus.SKIPPED), reason=RunReason.STORE_UNAVAILABLE,
                        finished_at=core.clock.now(), duration_ms=0,
                    )
                ]
            )  # fmt: skip
            inserted = set()
        if run.id not in inserted:
            self._waiting.pop(run.id, None)
            return
        ttl = core.settings.lease_ttl_seconds
        delay = max(0.0, (due - core.clock.now()).total_seconds())
        with contextlib.suppress(Exception):
            await core.leases.put(keys.retry_due(str(run.id)), due.isoformat(), delay + ttl * 10)
        self.schedule(w, run, due)

    def schedule(self, w: SlotWork, run: NewRun, due: datetime) -> None:
        """Fire the recorded retry at ``due``; during shutdown its row stays Pending for whoever is next."""
        if self.core.stopping:
            self._waiting.pop(run.id, None)
            return
        delay = max(0.0, (due - self.core.clock.now()).total_seconds())
        timer = self.core.clock.call_later(delay, self._due, run.id)
        self._waiting[run.id] = (w, run, timer)

    async def adopt(self, w: SlotWork, run: NewRun) -> None:
        """A dead replica's recorded retry: it keeps its backoff, wherever it runs."""
        try:
            due_at = parse_time(await self.core.leases.holder(keys.retry_due(str(run.id))))
        except Exception as err:  # the row is ours now: it must run, its backoff is the lesser loss
            log_fault(f"reading the backoff of retry {run.id} (it starts now)", err)
            due_at = None
        self.schedule(w, run, due_at or self.core.clock.now())

    def _due(self, run_id: uuid.UUID) -> None:
        entry = self._waiting.pop(run_id, None)
        if entry is not None:
            self._recent[run_id] = self.core.clock.monotonic()
            self.core.spawn(self.fire([(entry[0], entry[1])]), name="sundial-retry")

    def knows(self, run_id: uuid.UUID) -> bool:
        """Whether a Pending retry row is this incarnation's (waiting, or fired a moment ago)."""
        horizon = self.core.clock.monotonic() - RECENT_SECONDS
        self._recent = {i: at for i, at in self._recent.items() if at > horizon}
        return run_id in self._waiting or run_id in self._recent

    def cancel_waiting(self) -> None:
        """Shutdown: retries waiting for their backoff stay Pending rows, run by whoever comes next."""
        for _, _, timer in self._waiting.values():
            if timer is not None:
                timer.cancel()
        self._waiting.clear()

    async def settle(self, seconds: float = 5.0) -> None:
        """Shutdown: retries decided by the last attempts reach the database before it closes."""
        if self._recording:
            await asyncio.wait(list(self._recording), timeout=seconds)


async def _unwired(batch: list[Claim]) -> None:
    raise RuntimeError("Retries.fire was not wired to the engine")
