"""One replica's engine: its parts wired together, started and stopped in the right order.

Where each responsibility lives:

- :mod:`~sundial.engine.intake`: watch events, validation, the first look into the history, missed slots;
- :mod:`~sundial.engine.slots` and :mod:`~sundial.engine.scheduler`: the next slot of each CronConfig;
- :mod:`~sundial.engine.claiming`: lease and fence slots ahead of time, fire timers, run-now;
- :mod:`~sundial.engine.firing`: the fire instant; :mod:`~sundial.engine.concurrency`: Forbid/Replace;
- :mod:`~sundial.engine.execution`: an attempt through its job type, and its outcome;
- :mod:`~sundial.engine.retries`: every retry rule; :mod:`~sundial.engine.takeover`: dead replicas' work;
- :mod:`~sundial.engine.leasing`: heartbeat, membership, renewals, cancel markers;
- :mod:`~sundial.engine.projection` and :mod:`~sundial.engine.status`: the CR's status and Events;
- :mod:`~sundial.engine.recording` and :mod:`~sundial.engine.history`: the run history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Hashable
from typing import Any

from sundial.engine.claiming import Claiming
from sundial.engine.clock import Clock, SystemClock
from sundial.engine.concurrency import Concurrency
from sundial.engine.core import Core
from sundial.engine.execution import Execution
from sundial.engine.firing import Firing
from sundial.engine.history import History
from sundial.engine.intake import Intake
from sundial.engine.leasing import Leasing
from sundial.engine.projection import Projection
from sundial.engine.recording import Recording
from sundial.engine.retries import Retries
from sundial.engine.scheduler import Scheduler
from sundial.engine.sharding import Shards
from sundial.engine.slots import Slots
from sundial.engine.takeover import Takeover
from sundial.engine.tracked import Tracked
from sundial.jobs.base import JobEnvironment
from sundial.jobs.kinds import JobTypes
from sundial.kube import Kube
from sundial.leases.base import Leases
from sundial.models.runs import RunReason
from sundial.retrying import log_fault, retry_call
from sundial.settings import Settings
from sundial.store.items import RunItems

log = logging.getLogger("sundial.engine")

INHERIT_ATTEMPTS = 40
"""Start-up waits this many tries (about three minutes) for the run history, then gives up (and exits)."""


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        kube: Kube,
        history: History,
        leases: Leases,
        clock: Clock | None = None,
        job_types: JobTypes | None = None,
    ) -> None:
        core = Core.create(settings, clock=clock or SystemClock(), kube=kube, history=history, leases=leases)
        self.core = core
        self.job_types = job_types or JobTypes()
        self.shards = Shards(settings.replica)
        self.projection = Projection(core)
        self.recording = Recording(core, self.projection)
        self.scheduler = Scheduler(self._on_due, clock=core.clock)
        self.slots = Slots(core, self.scheduler, self.projection)
        self.leasing = Leasing(core, self.shards)
        self.concurrency = Concurrency(core)
        self.execution = Execution(core, self.job_types, self.projection, self.leasing)
        self.firing = Firing(core, self.concurrency, self.recording, self.execution)
        self.retries = Retries(core, self.recording)
        self.claiming = Claiming(
            core,
            slots=self.slots,
            shards=self.shards,
            recording=self.recording,
            firing=self.firing,
            execution=self.execution,
            concurrency=self.concurrency,
        )
        self.intake = Intake(
            core,
            slots=self.slots,
            shards=self.shards,
            projection=self.projection,
            recording=self.recording,
            claiming=self.claiming,
            leasing=self.leasing,
        )
        self.takeover = Takeover(
            core,
            claiming=self.claiming,
            concurrency=self.concurrency,
            firing=self.firing,
            execution=self.execution,
            recording=self.recording,
            projection=self.projection,
            retries=self.retries,
        )
        # the hooks that point back up the chain
        self.leasing.on_cancel_requested = lambda attempt: self.execution.cancel(attempt, RunReason.REPLACED)
        self.concurrency.cancel_local = self.execution.cancel
        self.concurrency.busy_outside = self.execution.busy
        self.concurrency.running_in_history = lambda uids: history.call(
            lambda: history.store.running_configs(uids, besides=settings.replica)
        )
        self.concurrency.ended_in_history = lambda slots: history.call(history.store.ended_slots, slots)
        self.execution.on_outcome = self.retries.after
        self.retries.fire = self.firing.fire
        self._services: dict[str, asyncio.Task[Any]] = {}

    async def _on_due(self, uids: list[Hashable]) -> None:
        await self.claiming.on_due(uids)

    @property
    def tracked(self) -> dict[str, Tracked]:
        return self.core.tracked

    async def observe(self, body: dict[str, Any], *, deleted: bool = False) -> None:
        """Feed every watch event here; cheap when nothing relevant changed."""
        await self.intake.observe(body, deleted=deleted)
        if deleted:
            self.execution.forget(str((body.get("metadata") or {}).get("uid")))

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        core = self.core
        # before anything is claimed: what is this replica's own now must not look inherited
        await retry_call(
            self.takeover.inherit,
            what="reading the claims this replica's previous run left",
            attempts=INHERIT_ATTEMPTS,
            max_delay=5.0,
            sleep=core.clock.sleep,
        )
        store = core.history.store
        await self.job_types.open(
            JobEnvironment(
                settings=core.settings,
                kube=core.kube,
                unfinished_runs=lambda ids: core.history.call(store.unfinished_among, list(ids)),
                items=RunItems(store.engine),
            )
        )
        core.history.start()
        for name, coro in (
            ("scheduler", self.scheduler.run()),
            ("status", core.status.run()),
            ("intake", self.intake.run()),
            ("reaper", self.takeover.run()),
            ("leases", self.leasing.run()),
        ):
            self._services[name] = asyncio.create_task(coro, name=f"sundial-{name}")

    async def stop(self) -> None:
        """Stop firing, let attempts finish within the grace period, flush history and status."""
        core = self.core
        core.stopping = True
        self.job_types.stopping()
        # nothing new fires, no takeovers: the scheduler, intake and reaper stop first
        for name in ("scheduler", "intake", "reaper"):
            self._services[name].cancel()
        self.retries.cancel_waiting()
        await self.claiming.unclaim_unfired()
        await self.execution.drain(core.settings.shutdown_grace_seconds)
        await self.retries.settle()
        for task in list(core.tasks):
            task.cancel()
        # every later step is bounded on its own: a shutdown that hangs would be SIGKILLed and
        # lose what the steps after it would have written; one that goes on loses one step
        await _step("ending background tasks", asyncio.gather(*core.tasks, return_exceptions=True), 10)
        await _step("writing the last history", core.history.close(), 20)
        try:
            await _step("giving back leases", self.leasing.shutdown(), 10)
        except Exception as err:
            log_fault("giving back leases at shutdown", err)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(core.status.drain(force=True), timeout=10)
        for task in self._services.values():
            task.cancel()
        await _step(
            "ending the engine's loops", asyncio.gather(*self._services.values(), return_exceptions=True), 10
        )
        await _step(
            "closing the job types", self.job_types.close(), core.settings.shutdown_grace_seconds + 20
        )
        await _step("closing the Redis client", core.leases.close(), 10)
        await _step("closing the Kubernetes client", core.kube.close(), 10)


async def _step(what: str, step: Awaitable[object], seconds: float) -> None:
    """Await a shutdown step for at most ``seconds``; one that does not end is left behind, said once.

    ``asyncio.wait``, not ``wait_for``: a step that does not honour cancellation must not hold
    up the rest of the shutdown either.
    """
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        log.warning("shutdown: %s did not end within %.0fs; going on without it", what, seconds)
        return
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
