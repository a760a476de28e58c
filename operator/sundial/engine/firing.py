"""The fire instant: the last checks before an attempt is launched, and nothing slow.

Claiming did the I/O ahead of time; here only the concurrency gate's one Redis round trip remains.
A claimed attempt always gets an outcome: launched, or finished unstarted with the true reason.
"""

from __future__ import annotations

import logging

from sundial.engine.concurrency import Concurrency
from sundial.engine.core import Core
from sundial.engine.execution import Execution
from sundial.engine.recording import Recording
from sundial.engine.slots import fire_time
from sundial.engine.tracked import Claim
from sundial.models.runs import RunReason, RunStatus, Trigger

log = logging.getLogger("sundial.engine")


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
        for w, run in batch:
            if core.current(w.tracked) and w.tracked.spec:
                live.append((w, run))
            else:
                recording.finish_unstarted(w, run, RunStatus.CANCELLED, RunReason.DELETED)
        gates = await self.concurrency.gate([w for w, _ in live])
        for (w, run), blocked in zip(live, gates, strict=True):
            spec = w.tracked.spec
            assert spec is not None
            if blocked:
                recording.finish_unstarted(w, run, RunStatus.SKIPPED, blocked)
            elif spec.suspend and w.trigger != Trigger.MANUAL:
                recording.finish_unstarted(w, run, RunStatus.SKIPPED, RunReason.SUSPENDED)
            elif spec.dry_run:
                recording.finish_unstarted(w, run, RunStatus.SUCCEEDED, RunReason.DRY_RUN)
            else:
                self.execution.launch(w, run, self.concurrency.guard(w))
