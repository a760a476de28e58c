"""What the engine keeps per CronConfig: bounded, a few hundred bytes plus the parsed spec."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sundial.store.records import NewRun

if TYPE_CHECKING:
    from sundial.models.runs import RunReason
    from sundial.models.spec import CronConfigSpec
    from sundial.scheduling import Schedule


@dataclass(eq=False)
class Attempt:
    """One executing attempt on this replica."""

    run_id: str
    slot: datetime
    attempt: int
    trigger: str
    started: datetime
    task: asyncio.Task[None] | None = None
    cancel_reason: RunReason | None = None
    """Why the engine cancelled the attempt (``Replaced``, ``Timeout``, ``OperatorShutdown``)."""
    running_lease: tuple[str, str] | None = None
    """(key, token) of the Forbid/Replace lease this attempt holds, renewed by the lease loop."""
    cancel_marker: str | None = None
    """Key another replica sets to cancel this attempt (Replace)."""
    progress: dict[str, Any] | None = None
    """What the job reported of its progress (a fan-out's item counts), shown in ``status.active``."""


@dataclass(eq=False)
class Tracked:
    uid: str
    namespace: str
    name: str
    generation: int
    created: datetime
    spec: CronConfigSpec | None = None
    schedule: Schedule | None = None
    invalid: str | None = None
    next_slot: datetime | None = None
    last_slot: datetime | None = None
    run_now: str | None = None
    """The last ``sundial.io/run-now`` value acted on."""
    pending_run_now: str | None = None
    ready: bool = False
    """False until history was consulted (missed slots planned); firing waits for it."""
    completed: bool = False
    """A one-shot ``runAt`` that has run."""
    active: dict[str, Attempt] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class SlotWork:
    """One attempt of one slot waiting to be claimed."""

    tracked: Tracked
    slot: datetime
    attempt: int
    trigger: str


Claim = tuple[SlotWork, NewRun]
"""A slot attempt leased and recorded ``Pending``: it will get an outcome, whatever happens."""
