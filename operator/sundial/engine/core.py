"""What every part of one replica's engine shares: identity, clock, backends, the tracked objects.

Holds no behaviour beyond spawning tasks, so the parts (intake, claiming, firing, execution,
retries, leasing, projection, takeover) depend on this and on each other's public methods only.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sundial.engine.clock import Clock
from sundial.engine.history import History
from sundial.engine.status import StatusPatcher
from sundial.engine.tracked import Tracked
from sundial.kube import Kube
from sundial.leases.base import Leases
from sundial.settings import Settings

log = logging.getLogger("sundial.engine")


@dataclass(eq=False)
class Core:
    settings: Settings
    clock: Clock
    kube: Kube
    history: History
    leases: Leases
    status: StatusPatcher
    replica: str
    token: str
    """This incarnation's lease owner token: ``replica:random``, new at every start."""
    born: datetime
    tracked: dict[str, Tracked] = field(default_factory=dict)
    """Every CronConfig this replica has seen, by uid."""
    with_active: dict[str, Tracked] = field(default_factory=dict)
    """CronConfigs with attempts running here: the lease loop walks these, not all 10,000."""
    stopping: bool = False
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    def create(
        cls, settings: Settings, *, clock: Clock, kube: Kube, history: History, leases: Leases
    ) -> Core:
        return cls(
            settings=settings,
            clock=clock,
            kube=kube,
            history=history,
            leases=leases,
            status=StatusPatcher(
                kube,
                qps=settings.status_qps,
                min_interval=settings.status_min_interval,
                clock=clock,
                replica=settings.replica,
            ),
            replica=settings.replica,
            token=f"{settings.replica}:{uuid.uuid4().hex[:12]}",
            born=clock.now(),
        )

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task of the engine: cancelled at shutdown, its crash logged."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(_log_crash)
        return task

    def current(self, tracked: Tracked) -> bool:
        """Whether ``tracked`` is still the live record of its CronConfig (not deleted meanwhile)."""
        return self.tracked.get(tracked.uid) is tracked


def _log_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s crashed", task.get_name(), exc_info=task.exception())
