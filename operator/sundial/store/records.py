"""Plain data going into and coming out of the run history: no I/O, no SQLAlchemy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from sundial.models.runs import RunStatus, Trigger


class SlotTaken(Exception):
    """The slot (CronConfig, scheduled instant, attempt) is recorded already: nothing was written."""


@dataclasses.dataclass(frozen=True, slots=True)
class NewRun:
    """A run row to claim; the caller chooses the id, so it can log it before the insert returns."""

    id: uuid.UUID
    config_uid: str
    namespace: str
    name: str
    generation: int
    scheduled_for: dt.datetime
    trigger: str
    """A :class:`~sundial.models.runs.Trigger` (plain strings with the same spelling work too)."""
    attempt: int
    status: str
    """Usually ``Pending``; a ``Skipped`` slot (with ``reason``) or a dry run is recorded as final."""
    reason: str | None = None
    started_at: dt.datetime | None = None
    replica: str | None = None
    dry_run: bool = False
    finished_at: dt.datetime | None = None
    duration_ms: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RunUpdate:
    """The outcome of one attempt, written by :meth:`RunStore.finish` in batches."""

    id: uuid.UUID
    status: str
    reason: str | None
    finished_at: dt.datetime | None
    duration_ms: int | None
    result: Any
    """Anything JSON-serialisable (values it cannot encode, e.g. datetimes, are stored as strings)."""
    error: str | None
    logs: list[Any] | None
    started_at: dt.datetime | None = None
    """When the attempt really started, if the claim did not know it yet; ``None`` keeps the stored one."""
    dry_run: bool | None = None
    """Set when the outcome decides it (a dry run recorded at its fire time); ``None`` keeps it."""
    generation: int | None = None
    """The spec generation the attempt ran with, when it changed after the claim; ``None`` keeps it."""


@dataclasses.dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of ``cron_runs``; every instant is tz-aware UTC."""

    id: uuid.UUID
    config_uid: str
    namespace: str
    name: str
    generation: int
    scheduled_for: dt.datetime
    trigger: Trigger
    attempt: int
    status: RunStatus
    reason: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_ms: int | None
    replica: str | None
    dry_run: bool
    result: Any
    error: str | None
    logs: list[Any]
    """Captured log entries; empty (never ``None``) when nothing was captured."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigRecord:
    """One row of ``cron_configs``: a CronConfig by uid, kept after deletion."""

    uid: str
    namespace: str
    name: str
    created_at: dt.datetime
    deleted_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One row of ``cron_config_versions``: the spec a CronConfig had at one generation."""

    uid: str
    generation: int
    spec: dict[str, Any]
    recorded_at: dt.datetime
