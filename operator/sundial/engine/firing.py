"""The fire instant: the last checks before an attempt is launched, and nothing slow.

Claiming did the I/O ahead of time; here the concurrency gate's one Redis round trip and the start
fence (one statement for the whole batch) remain. A claimed attempt always gets an outcome:
launched, or finished unstarted with the true reason.
"""

from __future__ import annotations

import asyncio
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

_Waiting = tuple[SlotWork, NewRun, datetime, float]


class Firing:
    def __init__(
        self, core: Core, concurrency: Concurrency, recording: Recording, execution: Execution
    ) -> None:
        self.core = core
        self.concurrency = concurrency
        self.recording = recording
        self.execution = execution
        self._waiting: list[_Waiting] = []
        """Slots whose Forbid gate was undecided: (work, run, when it first asked, give up at)."""
        self._polling = False

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
                self._wait(w, run, asked)
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

    # ------------------------------------------------------------------ undecided Forbid gates
    def _wait(self, w: SlotWork, run: NewRun, asked: datetime) -> None:
        """Ask the gate again soon, with every other undecided slot (one batch per poll, not a task each).

        A heartbeat expires within a lease TTL, so a slot waits about one at most. A holder found
        alive (and still holding) was running when the slot asked: ``ConcurrencyForbid`` as of
        then. A dead holder frees the slot, which then runs unless its successor is already due
        (``Missed``: only the newest may run) or its starting deadline has passed.
        """
        core = self.core
        self._waiting.append((w, run, asked, core.clock.monotonic() + core.settings.lease_ttl_seconds * 2))
        if not self._polling:
            self._polling = True
            core.spawn(self._poll(), name="sundial-undecided")

    async def _poll(self) -> None:
        try:
            while self._waiting:
                await self.core.clock.sleep(UNDECIDED_POLL_SECONDS)
                waiting, self._waiting = self._waiting, []
                await self._ask_again(waiting)
        except asyncio.CancelledError:  # shutdown: the slots still waiting did not run
            waiting, self._waiting = self._waiting, []
            for w, run, *_ in waiting:
                self.recording.finish_unstarted(w, run, RunStatus.CANCELLED, RunReason.OPERATOR_SHUTDOWN)
            raise
        finally:
            self._polling = False

    async def _ask_again(self, waiting: list[_Waiting]) -> None:
        core = self.core
        by_asked: dict[datetime, list[_Waiting]] = {}
        for item in waiting:
            w, run, asked, _ = item
            spec = w.tracked.spec if core.current(w.tracked) else None
            deadline = spec.starting_deadline_seconds if spec else None
            if core.stopping:
                self.recording.finish_unstarted(w, run, RunStatus.CANCELLED, RunReason.OPERATOR_SHUTDOWN)
            elif spec is None:
                self.recording.finish_unstarted(w, run, RunStatus.CANCELLED, RunReason.DELETED)
            elif deadline is not None and (core.clock.now() - fire_time(w)).total_seconds() > deadline:
                self.recording.finish_unstarted(w, run, RunStatus.SKIPPED, RunReason.MISSED)
            else:
                by_asked.setdefault(asked, []).append(item)
        for asked, items in by_asked.items():  # a gate judges holders as of one instant
            again = core.clock.now()
            try:
                decisions = await self.concurrency.gate([w for w, *_ in items], at=asked)
            except Exception as err:
                log_fault(f"checking concurrencyPolicy Forbid of {len(items)} slots again", err)
                self._waiting.extend(items)
                continue
            launch: list[Claim] = []
            for item, decision in zip(items, decisions, strict=True):
                w, run, _, give_up = item
                if decision == UNDECIDED and core.clock.monotonic() < give_up:
                    self._waiting.append(item)
                    continue
                if decision == UNDECIDED:
                    log.warning("[%s] the running lease's holder never resolved; slot skipped", w.tracked.key)
                    decision = RunReason.CONCURRENCY_FORBID
                if decision == RunReason.CONCURRENCY_FORBID:
                    # the holder proved alive since the slot asked and still holds: its attempt ran then
                    self.recording.finish_unstarted(
                        w, run, RunStatus.SKIPPED, RunReason.CONCURRENCY_FORBID, at=asked
                    )
                elif decision is None and superseded(w, core.clock.now()):  # the newer slot runs instead
                    self.concurrency.drop(w)
                    self.recording.finish_unstarted(w, run, RunStatus.SKIPPED, RunReason.MISSED)
                elif self._launchable(w, run, decision, again):
                    launch.append((w, run))
            await self._start(launch, again)
