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
from sundial.retrying import log_fault, retry_call

MAX_ACTIVE_SHOWN = 10
MAX_LAST_RUN_MESSAGE = 1024


def _dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def _time(value: datetime | None) -> str | None:
    """One formatter for every status time: the models' own (RFC 3339, UTC, ``Z``)."""
    return format_timestamp(value) if value is not None else None


class Projection:
    def __init__(self, core: Core) -> None:
        self.core = core
        self._conditions: dict[str, tuple[tuple[Any, ...], list[dict[str, Any]]]] = {}

    # ------------------------------------------------------------------ conditions
    def conditions(self, tracked: Tracked) -> list[dict[str, Any]]:
        """The conditions for what the engine knows, built from the models once per state.

        Only the ``Ready`` message of a scheduled CronConfig changes from slot to slot (it names the
        next run), so that one string is filled in per call: the models are not rebuilt per run.
        """
        key = (tracked.invalid, bool(tracked.spec and tracked.spec.suspend), tracked.completed)
        cached = self._conditions.get(tracked.uid)
        if cached is None or cached[0] != key:
            cached = (key, self._build_conditions(tracked))
            self._conditions[tracked.uid] = cached
        ready, *rest = cached[1]
        if ready["reason"] == ConditionReason.SCHEDULED:
            nxt = _time(tracked.next_slot)
            ready = {**ready, "message": f"next run at {nxt}" if nxt else "scheduled"}
        return [ready, *rest]

    def forget(self, uid: str) -> None:
        self._conditions.pop(uid, None)

    def _build_conditions(self, tracked: Tracked) -> list[dict[str, Any]]:
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
        else:  # the message, naming the next run, is filled in by conditions()
            ready = Condition(
                type=ConditionType.READY, status=true, reason=ConditionReason.SCHEDULED, message="scheduled"
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
                ActiveRun(
                    id=a.run_id,
                    scheduled_time=a.slot,
                    start_time=a.started,
                    replica=self.core.replica,
                    items=(a.progress or {}).get("items"),
                )
            )
            for a in list(tracked.active.values())[-MAX_ACTIVE_SHOWN:]
        ]

    def current(self, tracked: Tracked) -> dict[str, Any]:
        """The status fields that describe the CronConfig now: computed when a patch is sent."""
        return {
            "observedGeneration": tracked.generation,
            "conditions": self.conditions(tracked),
            "nextScheduleTime": _time(tracked.next_slot),
        }

    def _update(self, tracked: Tracked, changes: dict[str, Any]) -> None:
        self.core.status.update(
            tracked.uid, tracked.namespace, tracked.name, changes, derived=lambda: self.current(tracked)
        )

    # ------------------------------------------------------------------ status changes
    def scheduled(self, tracked: Tracked) -> None:
        """The spec, validity or next slot changed."""
        self._update(tracked, {})

    def started(self, tracked: Tracked, attempt: Attempt) -> None:
        changes: dict[str, Any] = {"active": self._active(tracked)}
        if attempt.trigger != Trigger.MANUAL:
            changes["lastScheduleTime"] = _time(attempt.slot)
        self._update(tracked, changes)

    def progress(self, tracked: Tracked) -> None:
        """A running attempt reported progress (coalesced like every status change)."""
        self._update(tracked, {"active": self._active(tracked)})

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
            trigger=trigger,  # the model validates the string into a Trigger
            message=(message or reason or "")[:MAX_LAST_RUN_MESSAGE],
        )
        changes: dict[str, Any] = {"lastRun": _dump(last_run), "active": self._active(tracked)}
        if trigger != Trigger.MANUAL:
            changes["lastScheduleTime"] = _time(slot)
        if status == RunStatus.SUCCEEDED:
            changes["lastSuccessfulTime"] = _time(finished)
        elif status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
            changes["lastFailureTime"] = _time(finished)
        self._update(tracked, changes)

    # ------------------------------------------------------------------ events
    def event(self, tracked: Tracked, reason: EventReason, message: str, *, warning: bool = True) -> None:
        """Best effort, in the background: the run history is the record, an Event is a courtesy."""
        type_ = "Warning" if warning else "Normal"
        self.core.spawn(self._post(tracked, reason, message, type_), name="sundial-event")

    async def _post(self, tracked: Tracked, reason: EventReason, message: str, type_: str) -> None:
        body = {"metadata": {"name": tracked.name, "namespace": tracked.namespace, "uid": tracked.uid}}
        what = f"posting Event {reason} for {tracked.key}"
        try:
            await retry_call(
                lambda: self.core.kube.event(body, reason=reason, message=message, type_=type_),
                what=what,
                attempts=3,
                sleep=self.core.clock.sleep,
            )
        except Exception as err:
            log_fault(what, err)
