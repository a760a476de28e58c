"""Work of replicas that went away: taken over, never lost and never run twice.

Three cases, checked every few seconds by one loop: a slot another replica leased but never
recorded (its lease expired with it), a slot or retry it recorded ``Pending`` but never started
(adopted, and run late but once), and an attempt it was running (``Failed`` with reason
``OwnerLost``, then retried per the spec). A replica is gone when its heartbeat key is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from sundial import metrics
from sundial.engine.clock import parse_time, utcnow
from sundial.engine.tracked import SlotWork, Tracked
from sundial.leases import keys
from sundial.models.runs import RunStatus, Trigger
from sundial.store.records import NewRun, RunRecord, RunUpdate

if TYPE_CHECKING:
    from sundial.engine.runtime import Runtime

log = logging.getLogger("sundial.engine")


class Takeover:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.expected: list[tuple[float, SlotWork]] = []
        """Slots another replica leased first: checked later for a row, taken over without one."""

    def expect(self, work: SlotWork, check_after: float) -> None:
        self.expected.append((time.monotonic() + check_after, work))

    async def run(self) -> None:
        """Take over slots whose claimer vanished and runs whose owner died."""
        rt = self.rt
        ttl = rt.settings.lease_ttl_seconds
        while True:
            await asyncio.sleep(min(ttl / 2, 5.0))
            try:
                await self.verify_claims()
                await self.reap_orphans()
            except Exception:
                log.exception("takeover check failed")

    async def verify_claims(self) -> None:
        rt = self.rt
        now = time.monotonic()
        due = [w for at, w in self.expected if at <= now]
        self.expected = [(at, w) for at, w in self.expected if at > now]
        if not due:
            return
        exists = await rt.history.call(
            rt.history.store.existing_slots, [(w.tracked.uid, w.slot, w.attempt) for w in due]
        )
        orphaned = [
            w
            for w in due
            if (w.tracked.uid, w.slot, w.attempt) not in exists and rt.tracked.get(w.tracked.uid) is w.tracked
        ]
        if orphaned:
            metrics.TAKEOVERS.inc(len(orphaned))
            log.warning("taking over %d slots whose claimer did not record them", len(orphaned))
            await rt._start(orphaned)

    async def reap_orphans(self) -> None:
        """Running rows whose replica's heartbeat is gone (or an earlier incarnation of this one)."""
        rt = self.rt
        ttl = rt.settings.lease_ttl_seconds
        unfinished = await rt.history.call(rt.history.store.unfinished)
        if not unfinished:
            return
        local = {a for t in rt._with_active.values() for a in t.active}
        cutoff = utcnow() - timedelta(seconds=ttl * 1.5)
        candidates = [
            rec
            for rec in unfinished
            if str(rec.id) not in local and not (rec.started_at and rec.started_at > cutoff)
        ]
        names = sorted({rec.replica or "" for rec in candidates})
        alive = dict(zip(names, await rt.leases.holders([keys.replica(n) for n in names]), strict=True))
        horizon = time.monotonic() - 60
        rt._recent_retries = {i: at for i, at in rt._recent_retries.items() if at > horizon}
        settled = utcnow() - rt._born > timedelta(seconds=60)
        for rec in candidates:
            rid = str(rec.id)
            holder = alive.get(rec.replica or "")
            ours_before = rec.replica == rt.replica and (
                (rec.started_at is not None and rec.started_at < rt._born)
                or (
                    rec.status == RunStatus.PENDING
                    and rec.trigger == Trigger.RETRY
                    and rec.id not in rt._retries
                    and rec.id not in rt._recent_retries
                )
            )
            if holder is not None and not ours_before:
                continue
            tracked = rt.tracked.get(rec.config_uid)
            if rec.status == RunStatus.PENDING and tracked is None and not settled:
                continue  # its CronConfig may not have been seen yet after a start
            if not await rt.leases.acquire(keys.reap(rid), rt.token, ttl * 6):
                continue
            if rec.status == RunStatus.PENDING and tracked is not None and await self.adopt(tracked, rec):
                continue
            now = utcnow()
            rt.history.finish(
                RunUpdate(
                    id=rec.id,
                    status=str(RunStatus.FAILED),
                    reason="OwnerLost",
                    finished_at=now,
                    duration_ms=int((now - rec.started_at).total_seconds() * 1000)
                    if rec.started_at
                    else None,
                    result=None,
                    error=f"replica {rec.replica} stopped before the attempt finished; "
                    f"taken over by {rt.replica}",
                    logs=None,
                )
            )
            metrics.TAKEOVERS.inc()
            log.warning(
                "run %s of %s/%s lost its owner %s; marked Failed", rid, rec.namespace, rec.name, rec.replica
            )
            if tracked is not None:
                rt._status_finished(
                    tracked,
                    rec.id,
                    rec.scheduled_for,
                    rec.attempt,
                    str(rec.trigger),
                    RunStatus.FAILED,
                    "OwnerLost",
                    started=rec.started_at,
                    finished=now,
                )
                rt._maybe_retry(tracked, rec.scheduled_for, rec.attempt)

    async def adopt(self, tracked: Tracked, rec: RunRecord) -> bool:
        """A slot its dead claimer recorded (Pending) but never started: run it here, late but once.

        The row moves to this replica only if it is still Pending and still the dead replica's, so
        two reapers cannot both adopt it. Past the starting deadline it is Skipped (Missed) instead.
        """
        rt = self.rt
        if not await rt.history.call(rt.history.store.adopt_pending, rec.id, rec.replica, rt.replica):
            return False
        metrics.TAKEOVERS.inc()
        work = SlotWork(tracked, rec.scheduled_for, rec.attempt, str(rec.trigger))
        run = NewRun(
            id=rec.id,
            config_uid=rec.config_uid,
            namespace=rec.namespace,
            name=rec.name,
            generation=rec.generation,
            scheduled_for=rec.scheduled_for,
            trigger=str(rec.trigger),
            attempt=rec.attempt,
            status=str(RunStatus.PENDING),
            replica=rt.replica,
        )
        deadline = tracked.spec.starting_deadline_seconds if tracked.spec else None
        lateness = (utcnow() - rt._fire_time(work)).total_seconds()
        log.warning(
            "run %s of %s was claimed by %s, which died before starting it; adopted",
            rec.id,
            tracked.key,
            rec.replica,
        )
        if work.trigger == Trigger.RETRY:  # a retry keeps its backoff, wherever it runs
            due_at = parse_time(await rt.leases.holder(keys.retry_due(str(rec.id))))
            rt._schedule_retry(work, run, due_at or utcnow())
        elif deadline is not None and lateness > deadline:
            rt._finish_unstarted(work, run, RunStatus.SKIPPED, "Missed")
        else:
            await rt._fire([(work, run)])
        return True
