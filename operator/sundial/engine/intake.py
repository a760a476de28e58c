"""From watch events to scheduled CronConfigs: validation, the first look into the history, missed slots.

Every watch event of every CronConfig comes through :meth:`Intake.observe` and is cheap when
nothing relevant changed. A newly seen CronConfig waits until its last recorded slot is read (in
batches: 10,000 at start-up are a few queries), then ``missedRunPolicy`` decides what the downtime
missed, and only then does it fire.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sundial import validation
from sundial.engine.claiming import Claiming
from sundial.engine.clock import parse_time
from sundial.engine.core import Core
from sundial.engine.leasing import Leasing
from sundial.engine.projection import Projection
from sundial.engine.recording import Recording
from sundial.engine.sharding import Shards
from sundial.engine.slots import Slots
from sundial.engine.tracked import SlotWork, Tracked
from sundial.jobs import registry
from sundial.models.resource import RUN_NOW
from sundial.models.runs import RunReason, RunStatus, Trigger
from sundial.models.spec import ConcurrencyPolicy
from sundial.models.status import EventReason
from sundial.retrying import log_fault, retry_call
from sundial.scheduling import plan_missed
from sundial.store.records import NewRun

log = logging.getLogger("sundial.engine")

BATCH_WAIT_SECONDS = 0.05
"""How long the first look into the history waits to batch CronConfigs seen together."""


class Intake:
    def __init__(
        self,
        core: Core,
        *,
        slots: Slots,
        shards: Shards,
        projection: Projection,
        recording: Recording,
        claiming: Claiming,
        leasing: Leasing,
    ) -> None:
        self.core = core
        self.slots = slots
        self.shards = shards
        self.projection = projection
        self.recording = recording
        self.claiming = claiming
        self.leasing = leasing
        self._waiting: dict[str, Tracked] = {}
        self._wakeup = asyncio.Event()

    # ------------------------------------------------------------------ watch events
    async def observe(self, body: dict[str, Any], *, deleted: bool = False) -> None:
        core = self.core
        meta = body.get("metadata") or {}
        uid = meta.get("uid")
        if not uid:
            return
        if deleted:
            await self._forget(uid)
            return
        core.status.observe(uid, body)
        tracked = core.tracked.get(uid)
        generation = int(meta.get("generation") or 0)
        if tracked is None:
            tracked = Tracked(
                uid=uid,
                namespace=meta.get("namespace", ""),
                name=meta.get("name", ""),
                generation=-1,
                created=parse_time(meta.get("creationTimestamp")) or core.clock.now(),
            )
            core.tracked[uid] = tracked
            core.history.config_seen(uid, tracked.namespace, tracked.name, tracked.created)
        if generation != tracked.generation:
            tracked.generation = generation
            self._apply_spec(tracked, body)
        run_now = (meta.get("annotations") or {}).get(RUN_NOW)
        if run_now and run_now != tracked.run_now and tracked.ready:
            tracked.run_now = run_now
            if tracked.invalid is None:
                core.spawn(self.claiming.manual(tracked, run_now), name=f"sundial-manual-{tracked.key}")
        elif run_now and not tracked.ready:
            tracked.pending_run_now = run_now  # fired once intake has read the history

    def _apply_spec(self, tracked: Tracked, body: dict[str, Any]) -> None:
        core = self.core
        result = validation.validate_object(body, known_handlers=set(registry.names()), now=core.clock.now())
        raw_spec = body.get("spec")
        core.history.version_seen(
            tracked.uid, tracked.generation, raw_spec if isinstance(raw_spec, dict) else {}
        )
        if isinstance(result, validation.Invalid):
            message = "; ".join(result.problems)
            first_time = tracked.invalid != message
            tracked.invalid, tracked.spec, tracked.schedule = message, None, None
            self.slots.stop(tracked)
            log.warning("[%s] invalid CronConfig: %s", tracked.key, message)
            self.projection.scheduled(tracked)
            if first_time:
                self.projection.event(tracked, EventReason.INVALID_SPEC, message)
            self.slots.update_gauges(invalid=True)
            return
        was_invalid, tracked.invalid = tracked.invalid is not None, None
        if was_invalid:
            self.slots.update_gauges(invalid=True)
        tracked.spec, tracked.schedule = result.spec, result.schedule
        if not tracked.ready:
            self._waiting[tracked.uid] = tracked
            self._wakeup.set()
            return
        self.slots.reschedule(tracked, after=max(core.clock.now(), tracked.last_slot or tracked.created))

    async def _forget(self, uid: str) -> None:
        core = self.core
        tracked = core.tracked.pop(uid, None)
        self._waiting.pop(uid, None)
        self.slots.scheduler.cancel(uid)
        self.shards.forget(uid)
        core.status.forget(uid)
        self.projection.forget(uid)
        self.slots.update_gauges(invalid=True)
        what = f"recording the deletion of CronConfig {uid}"
        try:
            await retry_call(
                lambda: core.history.call(core.history.store.mark_deleted, uid, core.clock.now()),
                what=what,
                attempts=5,
                sleep=core.clock.sleep,
            )
        except Exception as err:
            log_fault(what, err)
        if tracked:
            log.info("[%s] deleted: firing stopped, history kept", tracked.key)

    # ------------------------------------------------------------------ first look into the history
    async def run(self) -> None:
        """Batch the first look into the history for newly seen CronConfigs (10,000 at start-up)."""
        core = self.core
        while True:
            await self._wakeup.wait()
            await core.clock.sleep(BATCH_WAIT_SECONDS)
            self._wakeup.clear()
            batch, self._waiting = self._waiting, {}
            if not batch:
                continue
            what = f"reading the last slots of {len(batch)} CronConfigs"
            while not await core.history.consistent():  # slots the journal holds count too
                await core.clock.sleep(0.5)
            try:
                last = await retry_call(
                    lambda uids=list(batch): core.history.last_slots(uids),  # type: ignore[misc]
                    what=what,
                    sleep=core.clock.sleep,
                )
            except Exception as err:  # not an outage: retry the batch, with whatever came meanwhile
                log_fault(what, err)
                self._waiting.update(batch)
                self._wakeup.set()
                await core.clock.sleep(1.0)
                continue
            await self._plan(batch, last)

    async def _plan(self, batch: dict[str, Tracked], last: dict[str, datetime]) -> None:
        core = self.core
        now = core.clock.now()
        catchup: list[SlotWork] = []
        skipped: list[NewRun] = []
        for uid, tracked in batch.items():
            if core.tracked.get(uid) is not tracked or tracked.spec is None or tracked.schedule is None:
                continue
            tracked.last_slot = last.get(uid)
            tracked.ready = True
            self._plan_missed(tracked, now, catchup, skipped)
            if tracked.pending_run_now:
                tracked.run_now, tracked.pending_run_now = tracked.pending_run_now, None
                core.spawn(self.claiming.manual(tracked, tracked.run_now), name="sundial-manual")
        if skipped:
            await self.recording.record_skips(skipped)
        by_config: dict[str, list[SlotWork]] = {}
        for w in catchup:
            by_config.setdefault(w.tracked.uid, []).append(w)
        # One slot each (Skip/RunOnce, or Allow): one batch. Several under Forbid/Replace: in order.
        together = [
            w
            for works in by_config.values()
            for w in works
            if len(works) == 1
            or (w.tracked.spec and w.tracked.spec.concurrency_policy == ConcurrencyPolicy.ALLOW)
        ]
        if together:
            core.spawn(self.claiming.start(together), name="sundial-catchup")
        for works in by_config.values():
            if len(works) > 1 and works[0] not in together:
                core.spawn(self._catch_up_in_order(works), name="sundial-catchup")

    async def _catch_up_in_order(self, works: list[SlotWork]) -> None:
        """RunAll under Forbid/Replace: missed slots run one after another, oldest first."""
        for w in sorted(works, key=lambda w: w.slot):
            await self.claiming.start([w], inline=True)
            running = [a.task for a in w.tracked.active.values() if a.task is not None]
            if running:
                await asyncio.wait(running)
            # the running lease goes back now, not at the lease loop's next tick, or the next
            # slot would find it held and be skipped as ConcurrencyForbid
            await self.leasing.release_now()

    def _plan_missed(
        self, tracked: Tracked, now: datetime, catchup: list[SlotWork], skipped: list[NewRun]
    ) -> None:
        spec, schedule = tracked.spec, tracked.schedule
        assert spec is not None and schedule is not None
        if spec.suspend:
            self.slots.reschedule(tracked, after=now)
            return
        plan = plan_missed(
            schedule,
            last_slot=tracked.last_slot or tracked.created,
            now=now,
            policy=spec.missed_run_policy.value,
            starting_deadline_seconds=spec.starting_deadline_seconds,
        )
        for slot in plan.skip:
            skipped.append(
                self.recording.new_run(
                    tracked, slot, 1, Trigger.CATCH_UP, RunStatus.SKIPPED, reason=RunReason.MISSED
                )
            )
        for slot in plan.run:
            catchup.append(SlotWork(tracked, slot, 1, Trigger.CATCH_UP))
        newest = max([*plan.run, *plan.skip], default=None)
        if newest is not None:
            tracked.last_slot = max(newest, tracked.last_slot or newest)
        if plan.skip or plan.truncated:
            count = len(plan.skip) + plan.truncated
            self.projection.event(
                tracked,
                EventReason.MISSED_RUNS,
                f"{count} slot(s) missed while no operator ran, "
                f"recorded as Skipped (missedRunPolicy {spec.missed_run_policy})",
            )
        self.slots.reschedule(tracked, after=max(now, tracked.last_slot or now))
