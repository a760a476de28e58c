"""What the CR shows: the engine's view of each CronConfig projected onto its status and Events.

Status is built from the models in :mod:`sundial.models.status` and handed to the coalescing
:class:`~sundial.engine.status.StatusPatcher` as a partial merge patch; Events are best effort.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sundial.engine.core import Core
from sundial.engine.tracked import Attempt, Tracked
from sundial.models.base import format_timestamp
from sundial.models.runs import RunStatus, Trigger
from sundial.models.status import (
    ActiveRun,
    Condition,
    ConditionReason,
    ConditionStatus,
    ConditionType,
    EventReason,
    LastRun,
)

MAX_ACTIVE_SHOWN = 10
MAX_LAST_RUN_MESSAGE = 1024


def _dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def _time(value: datetime | None) -> str | None:
    """One formatter for every status time: the models' own (RFC 3339, UTC, ``Z``)."""
    return None if value is None else format_timestamp(value)


class Projection:
    def __init__(self, core: Core) -> None:
        self.core = core

    # ------------------------------------------------------------------ conditions
    def conditions(self, tracked: Tracked) -> list[dict[str, Any]]:
        true, false = ConditionStatus.TRUE, ConditionStatus.FALSE
        if tracked.invalid is not None:
            conds = [
                Condition(
                    type=ConditionType.READY,
                    status=false,
                    reason=ConditionReason.INVALID,
                    message=tracked.invalid,
                ),
                Condition(
                    type=ConditionType.INVALID,
                    status=true,
                    reason=ConditionReason.INVALID_SPEC,
                    message=tracked.invalid,
                ),
                Condition(
                    type=ConditionType.SUSPENDED, status=false, reason=ConditionReason.INVALID, message=""
                ),
            ]
            return [_dump(c) for c in conds]
        suspended = bool(tracked.spec and tracked.spec.suspend)
        if suspended:
            ready = Condition(
                type=ConditionType.READY,
                status=false,
                reason=ConditionReason.SUSPENDED,
                message="spec.suspend is true",
            )
        elif tracked.completed:
            ready = Condition(
                type=ConditionType.READY,
                status=true,
                reason=ConditionReason.COMPLETED,
                message="the one-shot runAt has run",
            )
        else:
            nxt = _time(tracked.next_slot)
            ready = Condition(
                type=ConditionType.READY,
                status=true,
                reason=ConditionReason.SCHEDULED,
                message=f"next run at {nxt}" if nxt else "scheduled",
            )
        conds = [
            ready,
            Condition(
                type=ConditionType.SUSPENDED,
                status=true if suspended else false,
                reason=ConditionReason.SUSPENDED if suspended else ConditionReason.ACTIVE,
                message="",
            ),
            Condition(type=ConditionType.INVALID, status=false, reason=ConditionReason.VALID, message=""),
        ]
        return [_dump(c) for c in conds]

    def _active(self, tracked: Tracked) -> list[dict[str, Any]]:
        return [
            _dump(
                ActiveRun(id=a.run_id, scheduled_time=a.slot, start_time=a.started, replica=self.core.replica)
            )
            for a in list(tracked.active.values())[-MAX_ACTIVE_SHOWN:]
        ]

    def _update(self, tracked: Tracked, changes: dict[str, Any]) -> None:
        self.core.status.update(tracked.uid, tracked.namespace, tracked.name, changes)

    # ------------------------------------------------------------------ status changes
    def scheduled(self, tracked: Tracked) -> None:
        """The spec, validity or next slot changed."""
        self._update(
            tracked,
            {
                "observedGeneration": tracked.generation,
                "conditions": self.conditions(tracked),
                "nextScheduleTime": _time(tracked.next_slot),
            },
        )

    def started(self, tracked: Tracked, attempt: Attempt) -> None:
        # the slot that fires was rescheduled unpublished at claim time: its successor shows now
        changes: dict[str, Any] = {
            "active": self._active(tracked),
            "nextScheduleTime": _time(tracked.next_slot),
            "conditions": self.conditions(tracked),
        }
        if attempt.trigger != Trigger.MANUAL:
            changes["lastScheduleTime"] = _time(attempt.slot)
        self._update(tracked, changes)

    def finished(
        self,
        tracked: Tracked,
        run_id: uuid.UUID | str,
        slot: datetime,
        attempt: int,
        trigger: str,
        status: RunStatus,
        reason: str | None,
        *,
        started: datetime | None,
        finished: datetime | None,
        message: str | None = None,
    ) -> None:
        last_run = LastRun(
            id=str(run_id),
            scheduled_time=slot,
            start_time=started,
            completion_time=finished,
            status=status,
            attempt=attempt,
            trigger=Trigger(trigger),
            message=(message or reason or "")[:MAX_LAST_RUN_MESSAGE],
        )
        changes: dict[str, Any] = {
            "lastRun": _dump(last_run),
            "active": self._active(tracked),
            "observedGeneration": tracked.generation,
            "conditions": self.conditions(tracked),
            "nextScheduleTime": _time(tracked.next_slot),
        }
        if trigger != Trigger.MANUAL:
            changes["lastScheduleTime"] = _time(slot)
        if status == RunStatus.SUCCEEDED:
            changes["lastSuccessfulTime"] = _time(finished)
        elif status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
            changes["lastFailureTime"] = _time(finished)
        self._update(tracked, changes)

    # ------------------------------------------------------------------ events
    def event(self, tracked: Tracked, reason: EventReason, message: str, *, warning: bool = True) -> None:
        body = {"metadata": {"name": tracked.name, "namespace": tracked.namespace, "uid": tracked.uid}}
        self.core.spawn(
            self.core.kube.event(
                body, reason=reason, message=message, type_="Warning" if warning else "Normal"
            ),
            name="sundial-event",
        )
