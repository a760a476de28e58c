"""Run records the engine writes without executing anything: claims, skips, unstarted outcomes.

Every claimed row gets an outcome: a slot that is not launched (skipped by policy, deleted
meanwhile, dry run, shutdown) is finished here, with its metrics and status.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sundial import metrics
from sundial.engine.core import Core
from sundial.engine.projection import Projection
from sundial.engine.tracked import SlotWork, Tracked
from sundial.models.runs import RunReason, RunStatus
from sundial.retrying import log_fault
from sundial.store.records import NewRun, RunUpdate

log = logging.getLogger("sundial.engine")


class Recording:
    def __init__(self, core: Core, projection: Projection) -> None:
        self.core = core
        self.projection = projection

    def new_run(
        self,
        tracked: Tracked,
        slot: datetime,
        attempt: int,
        trigger: str,
        status: RunStatus,
        *,
        reason: RunReason | None = None,
        started: datetime | None = None,
        finished: bool = False,
    ) -> NewRun:
        now = self.core.clock.now()
        return NewRun(
            id=uuid.uuid4(),
            config_uid=tracked.uid,
            namespace=tracked.namespace,
            name=tracked.name,
            generation=tracked.generation,
            scheduled_for=slot,
            trigger=str(trigger),
            attempt=attempt,
            status=str(status),
            reason=reason,
            started_at=started,
            replica=self.core.replica,
            dry_run=bool(tracked.spec and tracked.spec.dry_run) and status == RunStatus.SUCCEEDED,
            finished_at=now if finished else None,
            duration_ms=0 if finished else None,
        )

    async def record_skips(self, runs: list[NewRun]) -> None:
        """Skipped slots are final rows of their own (no attempt ran), fenced like claims."""
        try:
            inserted = await self.core.history.claim(runs)
        except Exception as err:
            log_fault(f"recording {len(runs)} skipped slots", err)
            return
        for run in runs:
            if run.id not in inserted:
                continue
            metrics.RUNS.labels(RunStatus.SKIPPED, run.trigger).inc()
            tracked = self.core.tracked.get(run.config_uid)
            if tracked is not None:
                self.projection.finished(
                    tracked,
                    run.id,
                    run.scheduled_for,
                    run.attempt,
                    run.trigger,
                    RunStatus.SKIPPED,
                    run.reason,
                    started=None,
                    finished=self.core.clock.now(),
                )

    def finish_unstarted(
        self, w: SlotWork, run: NewRun, status: RunStatus, reason: RunReason, *, at: datetime | None = None
    ) -> None:
        """A claimed attempt that is not launched: its outcome, decided at ``at`` (default now).

        ``at`` is when the deciding check was made (a Forbid gate that saw an attempt running), so
        ``finished_at`` says when the reason was true, not when a busy replica got to write it.
        """
        now = at or self.core.clock.now()
        succeeded = status == RunStatus.SUCCEEDED
        self.core.history.finish(
            RunUpdate(
                id=run.id,
                status=str(status),
                reason=reason,
                finished_at=now,
                duration_ms=0,
                result=None,
                error=None,
                logs=None,
                started_at=now if succeeded else None,
                dry_run=succeeded and reason == RunReason.DRY_RUN,
            )
        )
        metrics.RUNS.labels(str(status), w.trigger).inc()
        self.projection.finished(
            w.tracked,
            run.id,
            w.slot,
            w.attempt,
            w.trigger,
            status,
            reason,
            started=now if succeeded else None,
            finished=now,
        )
