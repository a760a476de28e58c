"""The fire instant: the last checks before an attempt is launched, and nothing slow.

Claiming did the I/O ahead of time; here the concurrency gate's one Redis round trip and the start
fence (one statement for the whole batch) remain. A claimed attempt always gets an outcome:
launched, or finished unstarted with the true reason.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

from sundial.engine.concurrency import UNDECIDED, Concurrency, Decision
from sundial.engine.core import Core
from sundial.engine.execution import Execution
from sundial.engine.recording import Recording
from sundial.engine.slots import fire_time, superseded
from sundial.engine.tracked import Claim, SlotWork
from sundial.models.runs import RunReason, RunStatus, Trigger
from sundial.retrying import log_fault
from sundial.store.records import NewRun

log = logging.getLogger("sundial.engine")

UNDECIDED_POLL_SECONDS = 0.25
"""How often a slot whose Forbid gate is undecided asks again (its holder's fate is known within a TTL)."""


class Firing:
    def __init__(
        self, core: Core, concurrency: Concurrency, recording: Recording, execution: Execution
    ) -> None:
        self.core = core
        self.concurrency = concurrency
        self.recording = recording
        self.execution = execution

    async def fire(self, batch: list[Claim]) -> None:
        clock = self.core.clock
        t0 = clock.now()
        try:
            await self._fire(batch)
        finally:
            log.debug(
                "fire n=%d late=%.1fms took=%.1fms",
                len(batch),
                (t0 - fire_time(batch[0][0])).total_seconds() * 1000,
                (clock.now() - t0).total_seconds() * 1000,
            )

    async def _fire(self, batch: list[Claim]) -> None:
        core, recording = self.core, self.recording
        if core.stopping:
            for w, run in batch:
                recording.finish_unstarted(w, run, RunStatus.CANCELLED, RunReason.OPERATOR_SHUTDOWN)
            return
        live: list[Claim] = []
        asked = core.clock.now()
        for w, run in batch:
            if not (core.current(w.tracked) and w.tracked.spec):
                recording.finish_unstarted(w, run, RunStatus.CANCELLED, RunReason.DELETED)
            elif superseded(w, asked):  # fired so late that its successor is due: that one runs
                recording.finish_unstarted(w, run, RunStatus.SKIPPED, RunReason.MISSED)
            else:
                live.append((w, run))
        gates = await self.concurrency.gate([w for w, _ in live], at=asked)
        launch: list[Claim] = []
        for (w, run), decision in zip(live, gates, strict=True):
            if decision == UNDECIDED:
                core.spawn(self._undecided(w, run, asked), name=f"sundial-undecided-{w.tracked.key}")
            elif self._launchable(w, run, decision, asked):
                launch.append((w, run))
        await self._start(launch, asked)

    def _launchable(self, w: SlotWork, run: NewRun, decision: Decision, asked: datetime) -> bool:
        """Whether the attempt runs; if not, its outcome is recorded here (a skip as of ``asked``)."""
        spec = w.tracked.spec
        assert spec is not None
        outcome: tuple[RunStatus, RunReason] | None = None
        if decision:
            outcome = (RunStatus.SKIPPED, RunReason(decision))
        elif spec.suspend and w.trigger != Trigger.MANUAL:
            outcome = (RunStatus.SKIPPED, RunReason.SUSPENDED)
        elif spec.dry_run:
            outcome = (RunStatus.SUCCEEDED, RunReason.DRY_RUN)
        if outcome is None:
            return True
        if not decision:
            self.concurrency.drop(w)  # the gate took the running lease for an attempt that does not run
        self.recording.finish_unstarted(w, run, *outcome, at=asked if decision else None)
        return False

    async def _start(self, batch: list[Claim], now: datetime) -> None:
        """The start fence, then the launch: only claims still this replica's row run here.

        ``now`` is when the gate let the attempts go (and took their running leases): from then on
        they hold the CronConfig, so that is their start, not the moment the fence's write returned.
        """
        if not batch:
            return
        core = self.core
        pending = [run.id for _, run in batch if run.status == RunStatus.PENDING]
        try:
            started = await core.history.start_runs(pending, core.replica, now)
        except Exception as err:
            log_fault(f"recording the start of {len(pending)} runs (recorded Skipped: StoreUnavailable)", err)
            for w, run in batch:
                self.concurrency.drop(w)
                self.recording.finish_unstarted(w, run, RunStatus.SKIPPED, RunReason.STORE_UNAVAILABLE)
            return
        for w, run in batch:
            if core.stopping:  # shutdown began during the fence: nothing new may outlive the drain
                self.concurrency.drop(w)
                self.recording.finish_unstarted(w, run, RunStatus.CANCELLED, RunReason.OPERATOR_SHUTDOWN)
                continue
            if run.status == RunStatus.PENDING and run.id not in started:
                self.concurrency.drop(w)
                log.warning(
                    "[%s] run %s was taken over by another replica before it started here; not run here",
                    w.tracked.key,
                    run.id,
                )
                continue
            running = dataclasses.replace(run, status=str(RunStatus.RUNNING), started_at=now)
            self.execution.launch(w, running, self.concurrency.guard(w))

    async def _undecided(self, w: SlotWork, run: NewRun, asked: datetime) -> None:
        """Ask the gate again until the holder of the running lease is known alive or dead.

        A heartbeat expires within a lease TTL, so this ends within about one. A holder found alive
        (and still holding) was running when the slot asked: ``ConcurrencyForbid`` as of then. A
        dead holder frees the slot, which then runs unless its successor is already due (``Missed``:
        only the newest may run) or its starting deadline has passed.
        """
        core = self.core
        give_up = core.clock.monotonic() + core.settings.lease_ttl_seconds * 2
        while True:
            await core.clock.sleep(UNDECIDED_POLL_SECONDS)
            if core.stopping:
                self.recording.finish_unstarted(w, run, RunStatus.CANCELLED, RunReason.OPERATOR_SHUTDOWN)
                return
            spec = w.tracked.spec if core.current(w.tracked) else None
            if spec is None:
                self.recording.finish_unstarted(w, run, RunStatus.CANCELLED, RunReason.DELETED)
                return
            deadline = spec.starting_deadline_seconds
            if deadline is not None and (core.clock.now() - fire_time(w)).total_seconds() > deadline:
                self.recording.finish_unstarted(w, run, RunStatus.SKIPPED, RunReason.MISSED)
                return
            again = core.clock.now()
            try:
                decision = (await self.concurrency.gate([w], at=asked))[0]
            except Exception as err:
                log_fault(f"[{w.tracked.key}] checking concurrencyPolicy Forbid again", err)
                continue
            if decision == UNDECIDED and core.clock.monotonic() < give_up:
                continue
            if decision == UNDECIDED:
                log.warning("[%s] the running lease's holder never resolved; slot skipped", w.tracked.key)
                decision = RunReason.CONCURRENCY_FORBID
            if decision == RunReason.CONCURRENCY_FORBID:
                # the holder proved alive since the slot asked and still holds: its attempt ran then
                self.recording.finish_unstarted(
                    w, run, RunStatus.SKIPPED, RunReason.CONCURRENCY_FORBID, at=asked
                )
                return
            if decision is None and superseded(w, core.clock.now()):  # the newer slot runs instead
                self.concurrency.drop(w)
                self.recording.finish_unstarted(w, run, RunStatus.SKIPPED, RunReason.MISSED)
                return
            if self._launchable(w, run, decision, again):
                await self._start([(w, run)], again)
            return
