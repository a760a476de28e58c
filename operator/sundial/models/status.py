"""The CronConfig status as pydantic models, and the rules for updating conditions.

The operator is the only writer of status. Reading tolerates keys these models do not know
(``extra="ignore"``), so a status written by a newer operator never stops an older one. Writing uses
:meth:`CronConfigStatus.to_merge_patch`, which carries explicit nulls so that cleared fields are
really removed; :meth:`CronConfigStatus.to_dict` is the compact form (no nulls).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Annotated, Any

import pydantic
from pydantic import Field, StrictBool, StrictInt

from sundial.models import base, runs

MAX_MESSAGE_LENGTH = 32768
"""Longer messages are cut to this length (ending in an ellipsis) rather than rejected."""


def _truncate(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_MESSAGE_LENGTH:
        return value[: MAX_MESSAGE_LENGTH - 1] + "\N{HORIZONTAL ELLIPSIS}"
    return value


Message = Annotated[str, pydantic.BeforeValidator(_truncate), Field(max_length=MAX_MESSAGE_LENGTH)]
"""Free text for humans, silently shortened so a long error can never make a status write fail."""

Reason = Annotated[str, Field(max_length=1024)]
"""A CamelCase word, e.g. ``Missed`` or ``ConcurrencyForbid``."""

RunId = Annotated[str, Field(max_length=64)]


class StatusModel(base.CamelModel):
    """A part of the status: camelCase, unknown keys ignored."""

    model_config = pydantic.ConfigDict(extra="ignore")


class ConditionType(enum.StrEnum):
    READY = "Ready"
    SUSPENDED = "Suspended"
    INVALID = "Invalid"


class ConditionReason(enum.StrEnum):
    """``reason`` of the conditions sundial sets."""

    SCHEDULED = "Scheduled"
    COMPLETED = "Completed"
    SUSPENDED = "Suspended"
    ACTIVE = "Active"
    INVALID = "Invalid"
    INVALID_SPEC = "InvalidSpec"
    VALID = "Valid"


class EventReason(enum.StrEnum):
    """``reason`` of the Events sundial posts on a CronConfig."""

    INVALID_SPEC = "InvalidSpec"
    MISSED_RUNS = "MissedRuns"
    RUN_FAILED = "RunFailed"
    RUN_TIMED_OUT = "RunTimedOut"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """One aspect of the CronConfig's state, in the usual Kubernetes shape."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    status: ConditionStatus
    reason: Reason | None = None
    message: Message | None = None
    last_transition_time: base.Timestamp | None = None
    observed_generation: Annotated[StrictInt, Field(ge=0)] | None = None


class LastRun(StatusModel):
    """The most recent run; the full history is in the run database."""

    id: RunId | None = None
    scheduled_time: base.Timestamp | None = None
    start_time: base.Timestamp | None = None
    completion_time: base.Timestamp | None = None
    status: runs.RunStatus | None = None
    attempt: Annotated[StrictInt, Field(ge=0)] | None = None
    trigger: runs.Trigger | None = None
    reason: Reason | None = None
    message: Message | None = None
    dry_run: StrictBool | None = None


class ItemCounts(StatusModel):
    """A fan-out run's items by status."""

    total: Annotated[StrictInt, Field(ge=0)] | None = None
    succeeded: Annotated[StrictInt, Field(ge=0)] | None = None
    failed: Annotated[StrictInt, Field(ge=0)] | None = None
    """Items whose last attempt failed and whose retry is due."""
    dead_lettered: Annotated[StrictInt, Field(ge=0)] | None = None
    pending: Annotated[StrictInt, Field(ge=0)] | None = None
    running: Annotated[StrictInt, Field(ge=0)] | None = None


class ActiveRun(StatusModel):
    """A run in progress."""

    id: RunId
    scheduled_time: base.Timestamp | None = None
    start_time: base.Timestamp | None = None
    replica: Annotated[str, Field(max_length=253)] | None = None
    items: ItemCounts | None = None
    """Fan-out runs: their items so far."""


class CronConfigStatus(StatusModel):
    """``status`` of a CronConfig."""

    observed_generation: Annotated[StrictInt, Field(ge=0)] | None = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(default_factory=list)
    next_schedule_time: base.Timestamp | None = None
    last_schedule_time: base.Timestamp | None = None
    last_successful_time: base.Timestamp | None = None
    last_failure_time: base.Timestamp | None = None
    last_run: LastRun | None = None
    active: Annotated[list[ActiveRun], Field(max_length=100)] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, camelCase, without the fields that are unset."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_merge_patch(self) -> dict[str, Any]:
        """A JSON merge patch that makes the stored status equal to this one.

        Unset fields are sent as ``null``, which deletes them: without that, a ``nextScheduleTime``
        or a ``lastRun.message`` from before would survive the patch. Lists are replaced whole.
        """
        return self.model_dump(mode="json", by_alias=True)

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if there is one."""
        return next((c for c in self.conditions if c.type == type_), None)


def set_condition(conditions: Sequence[Condition], new: Condition) -> list[Condition]:
    """``conditions`` with ``new`` in place of the condition of the same type (or appended).

    Following Kubernetes practice, ``lastTransitionTime`` only moves when the status changes: if the
    old condition had the same status, its transition time is kept.
    """
    result: list[Condition] = []
    replaced = False
    for old in conditions:
        if old.type != new.type:
            result.append(old)
            continue
        if old.status == new.status and old.last_transition_time is not None:
            new = new.model_copy(update={"last_transition_time": old.last_transition_time})
        result.append(new)
        replaced = True
    if not replaced:
        result.append(new)
    return result
