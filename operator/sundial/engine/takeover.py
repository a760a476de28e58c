"""Work of replicas that went away: taken over, never lost and never run twice.

Three cases, checked every few seconds by one loop: a slot another replica leased but never
recorded (its lease expired with it), a slot or retry it recorded ``Pending`` but never started
(adopted, and run late but once), and an attempt it was running (followed here if its job type
can resume it; otherwise ``Failed`` with reason ``OwnerLost``, then retried per the spec). A
replica is gone when its heartbeat key is.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sundial import metrics
from sundial.engine.claiming import Claiming
from sundial.engine.concurrency import Concurrency
from sundial.engine.core import Core
from sundial.engine.execution import Execution
from sundial.engine.firing import Firing
from sundial.engine.projection import Projection
from sundial.engine.recording import Recording
from sundial.engine.retries import Retries
from sundial.engine.slots import fire_time, superseded
from sundial.engine.tracked import SlotWork, Tracked
from sundial.leases import keys
from sundial.models.base import format_timestamp
from sundial.models.runs import RunReason, RunStatus, Trigger
from sundial.models.status import EventReason
from sundial.retrying import log_fault
from sundial.store.records import NewRun, RunRecord, RunUpdate

log = logging.getLogger("sundial.engine")

SETTLE_SECONDS = 60.0
"""After a start, Pending rows of CronConfigs not seen yet are left alone this long."""


class CatchingUp(Exception):
    """The database does not hold every write yet (the journal is being written): ask again soon."""

    transient = True


class Takeover:
    def __init__(
        self,
        core: Core,
        *,
        claiming: Claiming,
        concurrency: Concurrency,
        firing: Firing,
        execution: Execution,
        recording: Recording,
        projection: Projection,
        retries: Retries,
    ) -> None:
        self.core = core
        self.claiming = claiming
        self.concurrency = concurrency
        self.firing = firing
        self.execution = execution
        self.recording = recording
        self.projection = projection
        self.retries = retries
        self.inherited: set[uuid.UUID] = set()
        """Pending claims of this replica's previous incarnation, not adopted yet."""
        self._absent_since: dict[str, float] = {}
        """Replicas whose heartbeat was missing at a pass, since when (monotonic)."""

    async def inherit(self) -> None:
        """At start-up: claims an earlier incarnation of this replica recorded and never started.

        Its heartbeat looked like ours, so nobody else takes them over; they are adopted here like a
        dead replica's (run late within the starting deadline, else ``Missed``), never deleted: a
        deleted claim whose instant has passed would leave its slot with no record at all.
        """
        core = self.core
        if not await core.history.consistent():
            await core.history.drain()  # the journal may hold that incarnation's last writes
            if not await core.history.consistent():  # another replica is writing it: wait for it
                raise CatchingUp("the run history is still being written from the journal")
        rows = await core.history.call(lambda: core.history.store.unfinished(replica=core.replica))
        self.inherited = {r.id for r in rows if r.status == RunStatus.PENDING and r.trigger != Trigger.RETRY}
        if self.inherited:
            log.warning(
                "found %d slots a previous run of replica %s claimed and never started; adopting them",
                len(self.inherited),
                core.replica,
            )

    async def run(self) -> None:
        """Take over slots whose claimer vanished and runs whose owner died."""
        core = self.core
        period = min(core.settings.lease_ttl_seconds / 2, 5.0)
        await core.clock.sleep(min(period, 1.0))
        while True:
            try:
                # the database decides takeovers only once it holds every write the journal kept
                if await core.history.consistent():
                    await self.verify_claims()
                    await self.reap_orphans()
            except Exception as err:
                log_fault("takeover check", err)
            # inherited claims wait only for their CronConfigs to be seen, not for a whole period
            # a replica seen absent is checked again after the grace, not a whole period later
            soon = 0.5 if self.inherited else (2.5 if self._absent_since else period)
            await core.clock.sleep(min(soon, period))

    async def verify_claims(self) -> None:
        core = self.core
        due = self.claiming.take_expected()
        if not due:
            return
        try:
            exists = await core.history.call(
                core.history.store.existing_slots, [(w.tracked.uid, w.slot, w.attempt) for w in due]
            )
        except Exception:
            for w in due:  # checked again at the next pass: a slot is never dropped unchecked
                self.claiming.expect(w, 0.0)
            raise
        orphaned = [
            w for w in due if (w.tracked.uid, w.slot, w.attempt) not in exists and core.current(w.tracked)
        ]
        if orphaned:
            metrics.TAKEOVERS.inc(len(orphaned))
            log.warning("taking over %d slots whose claimer did not record them", len(orphaned))
            await self.claiming.start(orphaned)

    def _ours_before(self, rec: RunRecord) -> bool:
        """A row of an earlier incarnation of this replica (same name, so its heartbeat looks alive)."""
        core = self.core
        if rec.replica != core.replica:
            return False
        if rec.id in self.inherited:
            return True
        if rec.started_at is not None and rec.started_at < core.born:
            return True
        return (
            rec.status == RunStatus.PENDING
            and rec.trigger == Trigger.RETRY
            and not self.retries.knows(rec.id)
        )

    async def reap_orphans(self) -> None:
        """Running and Pending rows whose replica's heartbeat is gone (or an earlier incarnation's)."""
        core = self.core
        ttl = core.settings.lease_ttl_seconds
        unfinished = await core.history.call(core.history.store.unfinished)
        if not unfinished:
            return
        local = self.execution.local_run_ids()
        cutoff = core.clock.now() - timedelta(seconds=ttl * 1.5)
        candidates = [
            rec
            for rec in unfinished
            if str(rec.id) not in local
            and (
                not (rec.started_at and rec.started_at > cutoff)
                or self._ours_before(rec)
                or rec.replica == keys.HANDED_BACK
            )
        ]
        names = sorted({rec.replica or "" for rec in candidates})
        beats = dict(zip(names, await core.leases.holders([keys.replica(n) for n in names]), strict=True))
        gone = self._gone({name for name, beat in beats.items() if beat is None}) | {keys.HANDED_BACK}
        settled = core.clock.now() - core.born > timedelta(seconds=SETTLE_SECONDS)
        for rec in candidates:
            if (rec.replica or "") not in gone and not self._ours_before(rec):
                continue
            tracked = core.tracked.get(rec.config_uid)
            if rec.status == RunStatus.PENDING and tracked is None and not settled:
                continue  # its CronConfig may not have been seen yet after a start
            if rec.replica == keys.HANDED_BACK and tracked is None and not settled:
                continue  # a requeued run is resumed once its CronConfig is known, never failed for it
            self.inherited.discard(rec.id)
            if not await core.leases.acquire(keys.reap(str(rec.id)), core.token, ttl * 6):
                continue
            if rec.status == RunStatus.PENDING and tracked is not None and await self.adopt(tracked, rec):
                continue
            if rec.status == RunStatus.RUNNING and tracked is not None and await self.resume(tracked, rec):
                continue
            self._owner_lost(rec, tracked)

    def _gone(self, absent: set[str]) -> set[str]:
        """Replicas whose heartbeat has been absent for two lease periods, not just at this instant.

        Right after Redis restarts or is flushed every heartbeat is missing until its replica's
        next beat; taking over then would adopt live replicas' claims and fail their attempts.
        """
        now = self.core.clock.monotonic()
        for name in list(self._absent_since):
            if name not in absent:
                del self._absent_since[name]
        for name in absent:
            self._absent_since.setdefault(name, now)
        grace = 2 * min(self.core.settings.lease_ttl_seconds / 3, 1.0)
        return {name for name in absent if now - self._absent_since[name] >= grace}

    async def resume(self, tracked: Tracked, rec: RunRecord) -> bool:
        """A Running attempt whose job type can follow it (its work outlives the replica): follow it."""
        core = self.core
        if not self.execution.resumable(tracked):
            return False
        adopted = await core.history.call(
            lambda: core.history.store.adopt(rec.id, rec.replica, core.replica, status=RunStatus.RUNNING)
        )
        if not adopted:
            return False
        metrics.TAKEOVERS.inc()
        log.warning("run %s of %s lost its owner %s; resumed here", rec.id, tracked.key, rec.replica)
        work = SlotWork(tracked, rec.scheduled_for, rec.attempt, str(rec.trigger))
        guard = await self.concurrency.guard_if_free(work)
        # a run handed back on purpose (a requeue) goes on even if a newer attempt runs meanwhile
        handed_back = rec.replica == keys.HANDED_BACK
        replaced = guard[0] is None and not handed_back and await self.concurrency.replaced(work)
        attempt = self.execution.launch(work, _as_new_run(rec, core.replica), guard, resume=True)
        if replaced:  # a newer attempt started while nobody followed this one: Replace ends it
            self.execution.cancel(attempt, RunReason.REPLACED)
        return True

    def _owner_lost(self, rec: RunRecord, tracked: Tracked | None) -> None:
        core = self.core
        now = core.clock.now()
        core.history.finish(
            RunUpdate(
                id=rec.id,
                status=str(RunStatus.FAILED),
                reason=RunReason.OWNER_LOST,
                finished_at=now,
                duration_ms=int((now - rec.started_at).total_seconds() * 1000) if rec.started_at else None,
                result=None,
                error=f"replica {rec.replica} stopped before the attempt finished; "
                f"taken over by {core.replica}",
                logs=None,
            )
        )
        metrics.TAKEOVERS.inc()
        log.warning(
            "run %s of %s/%s lost its owner %s; marked Failed", rec.id, rec.namespace, rec.name, rec.replica
        )
        if tracked is not None:
            self.projection.event(
                tracked,
                EventReason.RUN_FAILED,
                f"run {rec.id} (slot {format_timestamp(rec.scheduled_for)}, attempt {rec.attempt}): "
                f"replica {rec.replica} stopped before the attempt finished",
            )
            self.projection.finished(
                tracked,
                rec.id,
                rec.scheduled_for,
                rec.attempt,
                str(rec.trigger),
                RunStatus.FAILED,
                RunReason.OWNER_LOST,
                started=rec.started_at,
                finished=now,
            )
            self.retries.after(tracked, rec.scheduled_for, rec.attempt, RunStatus.FAILED)

    async def adopt(self, tracked: Tracked, rec: RunRecord) -> bool:
        """A slot its dead claimer recorded (Pending) but never started: run it here, late but once.

        The row moves to this replica only if it is still Pending and still the dead replica's, so
        two reapers cannot both adopt it. Past the starting deadline it is Skipped (Missed) instead.
        """
        core = self.core
        if not await core.history.call(core.history.store.adopt, rec.id, rec.replica, core.replica):
            return False
        metrics.TAKEOVERS.inc()
        work = SlotWork(tracked, rec.scheduled_for, rec.attempt, str(rec.trigger))
        run = _as_new_run(rec, core.replica)
        deadline = tracked.spec.starting_deadline_seconds if tracked.spec else None
        lateness = (core.clock.now() - fire_time(work)).total_seconds()
        log.warning(
            "run %s of %s was claimed by %s, which died before starting it; adopted",
            rec.id,
            tracked.key,
            rec.replica,
        )
        if work.trigger == Trigger.RETRY:
            await self.retries.adopt(work, run)
        elif lateness < 0:  # claimed ahead of its instant: it fires on time
            self.claiming.hold([(work, run)])
        elif (deadline is not None and lateness > deadline) or superseded(work, core.clock.now()):
            self.recording.finish_unstarted(work, run, RunStatus.SKIPPED, RunReason.MISSED)
        else:
            await self.firing.fire([(work, run)])
        return True


def _as_new_run(rec: RunRecord, replica: str) -> NewRun:
    """The claim of a row adopted from another replica, as this replica's engine holds claims."""
    return NewRun(
        id=rec.id,
        config_uid=rec.config_uid,
        namespace=rec.namespace,
        name=rec.name,
        generation=rec.generation,
        scheduled_for=rec.scheduled_for,
        trigger=str(rec.trigger),
        attempt=rec.attempt,
        status=str(rec.status),
        started_at=rec.started_at,
        replica=replica,
    )
