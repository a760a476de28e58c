"""Claiming slots ahead of their fire time: lease in Redis, fence in the database, then a timer.

Exactly once per slot across active-active replicas: every replica computes the same slots; a
lease with an owner token decides which replica handles a slot attempt; the ``UNIQUE
(config_uid, scheduled_for, attempt)`` row is written before anything executes, so even a lost
lease cannot produce two executions. Both happen up to ``lookahead_seconds`` early, so at the fire
instant only in-memory work remains. A slot another replica leased is remembered here and checked
by takeover later: without a row by then, its claimer died and it is taken over.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Hashable
from datetime import datetime, timedelta

from sundial import metrics
from sundial.engine.clock import Timer
from sundial.engine.concurrency import Concurrency
from sundial.engine.core import Core
from sundial.engine.execution import Execution
from sundial.engine.firing import Firing
from sundial.engine.recording import Recording
from sundial.engine.sharding import Shards
from sundial.engine.slots import Slots, fire_time, superseded
from sundial.engine.tracked import Claim, SlotWork, Tracked
from sundial.leases import keys
from sundial.models.runs import RunReason, RunStatus, Trigger
from sundial.retrying import is_transient, log_fault, retry_call
from sundial.store.records import NewRun, SlotTaken

log = logging.getLogger("sundial.engine")

MANUAL_SLOT_TRIES = 3


class Claiming:
    def __init__(
        self,
        core: Core,
        *,
        slots: Slots,
        shards: Shards,
        recording: Recording,
        firing: Firing,
        execution: Execution,
        concurrency: Concurrency,
    ) -> None:
        self.core = core
        self.slots = slots
        self.shards = shards
        self.recording = recording
        self.firing = firing
        self.execution = execution
        self.concurrency = concurrency
        self._claimed: dict[uuid.UUID, Claim] = {}
        """Slots leased and recorded (Pending) ahead of their fire time, not fired yet."""
        self._timers: dict[int, tuple[Timer, list[Claim]]] = {}
        self._expected: list[tuple[float, SlotWork]] = []
        """Slots another replica leased first: (check after, work), for takeover."""

    # ------------------------------------------------------------------ due slots
    async def on_due(self, uids: list[Hashable]) -> None:
        """The scheduler's callback: these CronConfigs' next slots are within the lookahead."""
        core = self.core
        work: list[SlotWork] = []
        for uid in uids:
            tracked = core.tracked.get(str(uid))
            if tracked is None or tracked.next_slot is None or tracked.spec is None:
                continue
            slot = tracked.next_slot
            tracked.last_slot = slot
            self.slots.reschedule(tracked, after=slot, publish=False)
            work.append(SlotWork(tracked, slot, 1, Trigger.SCHEDULE))
        if not work or core.stopping:
            return
        # This replica's share is claimed now; the rest a moment later, and only if the preferred
        # replica has not claimed it by then (it died, or is slow): load spreads over replicas,
        # and a dead one's slots still fire on time while the membership catches up.
        mine = [w for w in work if self.shards.mine(w.tracked.uid)]
        others = [w for w in work if not self.shards.mine(w.tracked.uid)]
        if mine:
            core.spawn(self.start(mine), name="sundial-claim")
        if others:
            core.clock.call_later(core.settings.lookahead_seconds / 2, self._fallback, others)

    def _fallback(self, work: list[SlotWork]) -> None:
        if not self.core.stopping:
            self.core.spawn(self.start(work), name="sundial-claim-fallback")

    # ------------------------------------------------------------------ lease, fence, timer
    async def start(self, work: list[SlotWork], *, inline: bool = False) -> None:
        """Lease and fence a batch of attempts (ahead of their fire time), then fire each on time.

        ``inline``: an attempt already due is launched before this returns (catch-up in order).
        """
        core = self.core
        now = core.clock.now()
        settings = core.settings
        live: list[SlotWork] = []
        skipped: list[NewRun] = []
        for w in work:
            spec = w.tracked.spec
            deadline = spec.starting_deadline_seconds if spec else None
            lateness = (now - fire_time(w)).total_seconds()
            missed = deadline is not None and w.trigger != Trigger.RETRY and lateness > deadline
            if missed or superseded(w, now):
                skipped.append(
                    self.recording.new_run(
                        w.tracked, w.slot, w.attempt, w.trigger, RunStatus.SKIPPED,
                        reason=RunReason.MISSED, finished=True,
                    )
                )  # fmt: skip
            elif spec is not None:
                live.append(w)
        try:
            won = await core.leases.acquire_many(
                [(keys.slot(w.tracked.uid, w.slot, w.attempt), core.token) for w in live],
                settings.lease_ttl_seconds + settings.lookahead_seconds,
            )
        except Exception as err:
            if not is_transient(err):
                raise
            # the lease only spreads the work; the row is the fence, so slots go on without Redis
            log_fault(f"leasing {len(live)} slots in Redis (claiming them in the run history alone)", err)
            won = [True] * len(live)
        claims: list[Claim] = []
        for w, ok in zip(live, won, strict=True):
            if not ok:
                metrics.LEASE_CONFLICTS.labels("slot").inc()
                wait = max(0.0, (fire_time(w) - now).total_seconds()) + settings.lease_ttl_seconds * 1.5
                self.expect(w, wait)
                continue
            claims.append(
                (w, self.recording.new_run(w.tracked, w.slot, w.attempt, w.trigger, RunStatus.PENDING))
            )
        if skipped:
            await self.recording.record_skips(skipped)
        if not claims:
            return
        try:
            inserted = await core.history.claim([run for _, run in claims])
        except Exception as err:
            # fail closed: nothing runs that cannot be recorded, and the slots say why afterwards
            log_fault(f"claiming {len(claims)} runs (not run: recorded Skipped, StoreUnavailable)", err)
            core.history.record_later(
                [
                    dataclasses.replace(
                        run, status=str(RunStatus.SKIPPED), reason=RunReason.STORE_UNAVAILABLE,
                        finished_at=now, duration_ms=0,
                    )
                    for _, run in claims
                ]
            )  # fmt: skip
            return
        log.debug("claim n=%d took=%.1fms", len(claims), (core.clock.now() - now).total_seconds() * 1000)
        by_time: dict[datetime, list[Claim]] = {}
        for w, run in claims:
            if run.id not in inserted:
                metrics.LEASE_CONFLICTS.labels("row").inc()
                continue
            by_time.setdefault(fire_time(w), []).append((w, run))
            self._claimed[run.id] = (w, run)
        if core.stopping:  # shutdown began while claiming: give the slots back
            await self.unclaim_unfired()
            return
        await self._arm(by_time, inline)

    def hold(self, claims: list[Claim]) -> None:
        """Claims recorded elsewhere (adopted ahead of their instant) fire on time, like our own."""
        by_time: dict[datetime, list[Claim]] = {}
        for w, run in claims:
            by_time.setdefault(fire_time(w), []).append((w, run))
            self._claimed[run.id] = (w, run)
        self.core.spawn(self._arm(by_time, False), name="sundial-hold")

    async def _arm(self, by_time: dict[datetime, list[Claim]], inline: bool) -> None:
        core = self.core
        for at, batch in by_time.items():
            delay = (at - core.clock.now()).total_seconds()
            if delay <= 0 and inline:  # the caller waits for the launch (catch-up in order)
                await self._fire_now(batch)
            elif delay <= 0:
                core.spawn(self._fire_now(batch), name="sundial-fire")
            else:
                key = id(batch)
                timer = core.clock.call_later(delay, self._fire_due, key)
                self._timers[key] = (timer, batch)

    def _fire_due(self, key: int) -> None:
        entry = self._timers.pop(key, None)
        if entry is not None:
            self.core.spawn(self._fire_now(entry[1]), name="sundial-fire")  # fire() logs how late

    async def _fire_now(self, batch: list[Claim]) -> None:
        for _, run in batch:
            self._claimed.pop(run.id, None)
        await self.firing.fire(batch)

    async def unclaim_unfired(self) -> None:
        """Shutdown: slots claimed ahead but not yet due are given back, not cancelled.

        Their Pending rows are deleted and their leases released, so another replica takes them
        over (its claim check finds no row) or, with no other replica, the restarted operator sees
        them as missed and applies ``missedRunPolicy``. Nothing is recorded as run that did not run.
        """
        core = self.core
        for timer, _ in self._timers.values():
            timer.cancel()
        self._timers.clear()
        claimed, self._claimed = self._claimed, {}
        if not claimed:
            return
        try:
            deleted = await core.history.call(core.history.store.release_claims, list(claimed))
        except Exception as err:
            log_fault(f"giving back {len(claimed)} claimed slots (the reaper settles them)", err)
            return
        await core.leases.release_many(
            [(keys.slot(w.tracked.uid, w.slot, w.attempt), core.token) for w, _ in claimed.values()]
        )
        log.info("gave back %d slots claimed ahead of their fire time (%d rows)", len(claimed), deleted)

    # ------------------------------------------------------------------ for takeover
    def expect(self, work: SlotWork, check_after: float) -> None:
        self._expected.append((self.core.clock.monotonic() + check_after, work))

    def take_expected(self) -> list[SlotWork]:
        """Slots another replica leased whose check time has come."""
        now = self.core.clock.monotonic()
        due = [w for at, w in self._expected if at <= now]
        self._expected = [(at, w) for at, w in self._expected if at > now]
        return due

    # ------------------------------------------------------------------ run now
    async def manual(self, tracked: Tracked, value: str) -> None:
        """One run per distinct ``sundial.io/run-now`` value, fenced by the database across restarts."""
        now = self.core.clock.now()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        for shift in range(MANUAL_SLOT_TRIES):
            # a manual run's slot is its start instant; should a scheduled slot of the same
            # CronConfig sit on that very millisecond, the next free millisecond is its slot
            slot = now + timedelta(milliseconds=shift)
            run = self.recording.new_run(tracked, slot, 1, Trigger.MANUAL, RunStatus.RUNNING, started=now)
            try:  # a run-now request waits out an outage of the run history: it is never dropped
                claimed = await retry_call(
                    lambda run=run: self.core.history.claim_manual(tracked.uid, value, run),  # type: ignore[misc]
                    what=f"[{tracked.key}] recording run-now={value!r}",
                    max_delay=5.0,
                    sleep=self.core.clock.sleep,
                )
            except SlotTaken:
                continue
            break
        else:
            log.warning("[%s] run-now=%r found no free slot near %s", tracked.key, value, now)
            return
        if not claimed:
            return
        log.info("[%s] manual run %s for run-now=%r", tracked.key, run.id, value)
        w = SlotWork(tracked, slot, 1, Trigger.MANUAL)
        self.execution.launch(w, run, await self.concurrency.guard_if_free(w))
