"""Running one attempt through its job type, and recording how it ended.

The engine knows no job type: it resolves ``spec.job`` to a :class:`~sundial.jobs.base.JobType`
and its typed spec, runs the attempt in a task, enforces ``timeoutSeconds`` with the clock, and
cancels through the job type's hook (``Replace``, timeout, shutdown). Whatever happens, the
attempt's outcome is recorded, with secrets redacted from the result, error and logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sundial import metrics
from sundial.engine.core import Core
from sundial.engine.leasing import Leasing
from sundial.engine.projection import Projection
from sundial.engine.slots import fire_time
from sundial.engine.tracked import Attempt, SlotWork, Tracked
from sundial.jobs.base import JobType
from sundial.jobs.context import Capture, JobContext, JobFailed, JobTimedOut, RunInfo, redact
from sundial.jobs.kinds import JobTypes
from sundial.models.base import format_timestamp
from sundial.models.runs import RunReason, RunStatus, Trigger
from sundial.models.spec import CronConfigSpec, SpecModel
from sundial.models.status import EventReason
from sundial.retrying import retry_call
from sundial.store.records import NewRun, RunUpdate

log = logging.getLogger("sundial.engine")

OutcomeHook = Callable[[Tracked, datetime, int, RunStatus], None]
"""(CronConfig, slot, attempt number, status) of every attempt that ended: retries decide."""

_CANCEL_MESSAGES = {
    RunReason.REPLACED: "replaced by a newer run (concurrencyPolicy Replace)",
    RunReason.OPERATOR_SHUTDOWN: "the operator shut down before the attempt finished",
}


class Execution:
    def __init__(self, core: Core, job_types: JobTypes, projection: Projection, leasing: Leasing) -> None:
        self.core = core
        self.job_types = job_types
        self.projection = projection
        self.leasing = leasing
        self.on_outcome: OutcomeHook = lambda tracked, slot, attempt, status: None
        self._contexts: dict[str, JobContext] = {}
        self._resolved: dict[str, tuple[CronConfigSpec, tuple[JobType[Any], SpecModel] | None]] = {}

    def local_run_ids(self) -> set[str]:
        """Attempts running on this replica now (takeover must leave them alone)."""
        return {run_id for t in self.core.with_active.values() for run_id in t.active}

    def running_tasks(self) -> list[asyncio.Task[None]]:
        return [a.task for t in self.core.tracked.values() for a in t.active.values() if a.task]

    def busy(self, tracked: Tracked) -> bool:
        """Work of the CronConfig still runs outside this replica's tasks (its job type knows)."""
        resolved = self.resolve(tracked)
        return resolved is not None and resolved[0].busy(resolved[1], tracked.uid)

    # ------------------------------------------------------------------ launching
    def resolve(self, tracked: Tracked) -> tuple[JobType[Any], SpecModel] | None:
        """The job type and typed job spec of a CronConfig, looked up once per spec (not per run)."""
        spec = tracked.spec
        if spec is None:
            return None
        cached = self._resolved.get(tracked.uid)
        if cached is None or cached[0] is not spec:
            cached = (spec, self.job_types.resolve(spec.job))
            self._resolved[tracked.uid] = cached
        return cached[1]

    def forget(self, uid: str) -> None:
        self._resolved.pop(uid, None)

    def resumable(self, tracked: Tracked) -> bool:
        """Whether the CronConfig's job type can follow an attempt another replica started."""
        resolved = self.resolve(tracked)
        return resolved is not None and resolved[0].resumable

    def launch(
        self,
        w: SlotWork,
        run: NewRun,
        guard: tuple[tuple[str, str] | None, str | None],
        *,
        resume: bool = False,
    ) -> Attempt:
        """Start the attempt in a task of its own; ``guard`` is its running lease and cancel marker.

        ``resume``: the attempt was started by a replica that died; its job type follows it.
        """
        attempt = Attempt(
            run_id=str(run.id),
            slot=w.slot,
            attempt=w.attempt,
            trigger=w.trigger,
            started=run.started_at or self.core.clock.now(),
        )
        attempt.running_lease, attempt.cancel_marker = guard
        w.tracked.active[attempt.run_id] = attempt
        self.core.with_active[w.tracked.uid] = w.tracked
        attempt.task = self.core.spawn(self._execute(w, run, attempt, resume), name=f"sundial-run-{run.id}")
        return attempt

    def cancel(self, attempt: Attempt, reason: RunReason) -> None:
        """Stop a local attempt: the job type's own hook first (work outside the process), then the task."""
        if attempt.task is None or attempt.task.done():
            return
        attempt.cancel_reason = attempt.cancel_reason or reason
        ctx = self._contexts.get(attempt.run_id)
        if ctx is None:
            return  # not started yet: the attempt cancels itself once it starts, so it is recorded
        tracked = self.core.tracked.get(ctx.run.uid) if ctx else None
        resolved = self.resolve(tracked) if tracked else None
        if ctx is not None and resolved is not None:
            job_type, model = resolved
            self.core.spawn(job_type.cancel(model, ctx, str(reason)), name="sundial-cancel")
        attempt.task.cancel()

    def detach(self) -> int:
        """Shutdown: stop following attempts whose work outlives the process (a Kubernetes Job).

        Nothing is recorded for them and their work is left running: the row stays ``Running``
        and the next replica to start (or any other, once this one's heartbeat is gone) follows
        it to its outcome. Returns how many were detached.
        """
        detached = 0
        for tracked in list(self.core.with_active.values()):
            if not self.resumable(tracked):
                continue
            for attempt in list(tracked.active.values()):
                if attempt.task is not None and not attempt.task.done():
                    attempt.cancel_reason = RunReason.DETACHED
                    attempt.task.cancel()
                    detached += 1
        return detached

    async def drain(self, grace: float) -> None:
        """Shutdown: attempts may finish within ``grace`` seconds; the rest are cancelled."""
        detached = self.detach()
        if detached:
            log.info("left %d attempts running outside the operator; a replica will follow them", detached)
        await asyncio.sleep(0)
        running = self.running_tasks()
        if not running:
            return
        log.info("waiting up to %.0fs for %d running attempts", grace, len(running))
        finished = asyncio.ensure_future(asyncio.wait(running))
        grace_over = asyncio.ensure_future(self.core.clock.sleep(grace))
        await asyncio.wait({finished, grace_over}, return_when=asyncio.FIRST_COMPLETED)
        finished.cancel()
        grace_over.cancel()
        pending = {t for t in running if not t.done()}
        for t in self.core.tracked.values():
            for a in list(t.active.values()):
                if a.task in pending:
                    self.cancel(a, RunReason.OPERATOR_SHUTDOWN)
        if pending:
            await asyncio.wait(pending, timeout=5)

    # ------------------------------------------------------------------ one attempt
    def _context(self, w: SlotWork, attempt: Attempt) -> JobContext:
        tracked = w.tracked
        assert tracked.spec is not None
        return JobContext(
            run=RunInfo(
                id=attempt.run_id,
                uid=tracked.uid,
                namespace=tracked.namespace,
                name=tracked.name,
                generation=tracked.generation,
                scheduled_for=w.slot,
                attempt=w.attempt,
                trigger=w.trigger,
            ),
            context=dict(tracked.spec.context),
            capture=Capture(),
            config=tracked.spec,
            report=lambda progress: self._progress(tracked, attempt, progress),
            read_secret=lambda name, key: retry_call(
                lambda: self.core.kube.read_secret(tracked.namespace, name, key),
                what=f"reading Secret {tracked.namespace}/{name}",
                attempts=3,
                sleep=self.core.clock.sleep,
            ),
        )

    async def _attempt(self, w: SlotWork, ctx: JobContext, resume: bool) -> Any:
        spec = w.tracked.spec if self.core.current(w.tracked) else None
        if spec is None:
            raise JobFailed("the CronConfig was deleted or became invalid")
        resolved = self.resolve(w.tracked)
        if resolved is None:
            raise JobFailed(f"job type {spec.job.kind} is not supported by this sundial version")
        job_type, model = resolved
        return await (job_type.resume(model, ctx) if resume else job_type.run(model, ctx))

    async def _execute(self, w: SlotWork, run: NewRun, attempt: Attempt, resume: bool) -> None:
        core, tracked, spec = self.core, w.tracked, w.tracked.spec
        assert spec is not None
        metrics.ACTIVE.inc()
        started = run.started_at or core.clock.now()  # the start fence recorded it (or the resumed start)
        if w.trigger in (Trigger.SCHEDULE, Trigger.CATCH_UP):
            metrics.FIRE_LAG.observe(max(0.0, (started - fire_time(w)).total_seconds()))
        self.projection.started(tracked, attempt)
        ctx = self._context(w, attempt)
        self._contexts[attempt.run_id] = ctx
        if attempt.cancel_reason is not None:  # cancelled before it started
            self.cancel(attempt, attempt.cancel_reason)
        # a resumed attempt keeps the deadline it started with
        remaining = spec.timeout_seconds - max(0.0, (core.clock.now() - started).total_seconds())
        timer = core.clock.call_later(max(0.0, remaining), self.cancel, attempt, RunReason.TIMEOUT)
        status, result, error = RunStatus.SUCCEEDED, None, None
        reason: str | None = None
        try:
            result = await self._attempt(w, ctx, resume)
            await asyncio.sleep(0)  # let the other attempts due now start before this one books
        except asyncio.CancelledError:
            cancelled = attempt.cancel_reason or RunReason.CANCELLED
            if cancelled == RunReason.DETACHED:
                timer.cancel()
                self._contexts.pop(attempt.run_id, None)
                self._forget(w.tracked, attempt)
                return
            reason = cancelled
            if cancelled == RunReason.TIMEOUT:
                status, error = RunStatus.TIMED_OUT, f"attempt exceeded timeoutSeconds={spec.timeout_seconds}"
            else:
                status, error = RunStatus.CANCELLED, _CANCEL_MESSAGES.get(cancelled, str(cancelled))
        except JobFailed as err:
            timed_out = isinstance(err, JobTimedOut)
            status = RunStatus.TIMED_OUT if timed_out else RunStatus.FAILED
            reason = err.reason or (RunReason.TIMEOUT if timed_out else RunReason.JOB_FAILED)
            error, result = str(err), err.result
        except Exception as err:
            status, reason, error = RunStatus.FAILED, type(err).__name__, f"{type(err).__name__}: {err}"
        finally:
            timer.cancel()
            self._contexts.pop(attempt.run_id, None)
        self._record(w, run, attempt, ctx, started, status, reason, result, error)

    def _record(
        self,
        w: SlotWork,
        run: NewRun,
        attempt: Attempt,
        ctx: JobContext,
        started: datetime,
        status: RunStatus,
        reason: str | None,
        result: Any,
        error: str | None,
    ) -> None:
        core, tracked = self.core, w.tracked
        finished = core.clock.now()
        secrets = ctx.secrets_seen
        error = redact(error, secrets) if error else None
        core.history.finish(
            RunUpdate(
                id=run.id,
                status=str(status),
                reason=reason,
                finished_at=finished,
                duration_ms=int((finished - started).total_seconds() * 1000),
                result=redact(_jsonable(result), secrets),
                error=error,
                logs=redact(ctx.capture.export(), secrets),
                started_at=started,
                # a spec edited between claim and start: the row names the spec that really ran
                generation=ctx.run.generation if ctx.run.generation != run.generation else None,
            )
        )
        metrics.RUNS.labels(str(status), w.trigger).inc()
        self._forget(tracked, attempt)
        if attempt.running_lease is not None:
            self.leasing.release_soon(attempt.running_lease)
        level = logging.DEBUG if status == RunStatus.SUCCEEDED else logging.WARNING
        if log.isEnabledFor(level):
            log.log(
                level,
                "[%s] run=%s slot=%s attempt=%d %s%s",
                tracked.key,
                attempt.run_id,
                format_timestamp(w.slot),
                w.attempt,
                status,
                f": {error}" if error else "",
            )
        self.projection.finished(
            tracked,
            run.id,
            w.slot,
            w.attempt,
            w.trigger,
            status,
            reason,
            started=started,
            finished=finished,
            message=error,
        )
        if status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
            self.projection.event(
                tracked,
                EventReason.RUN_FAILED if status == RunStatus.FAILED else EventReason.RUN_TIMED_OUT,
                f"run {attempt.run_id} (slot {format_timestamp(w.slot)}, attempt {w.attempt}): {error}",
            )
        self.on_outcome(tracked, w.slot, w.attempt, status)

    def _progress(self, tracked: Tracked, attempt: Attempt, progress: dict[str, Any]) -> None:
        if progress != attempt.progress and attempt.run_id in tracked.active:
            attempt.progress = progress
            self.projection.progress(tracked)

    def _forget(self, tracked: Tracked, attempt: Attempt) -> None:
        metrics.ACTIVE.dec()
        tracked.active.pop(attempt.run_id, None)
        if not tracked.active:
            self.core.with_active.pop(tracked.uid, None)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)
