"""Specs that are valid but risky: admitted, with a warning that names the field and the risk."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from sundial.models.spec import ConcurrencyPolicy, CronConfigSpec
from sundial.scheduling import IntervalSchedule, Schedule
from sundial.scheduling.oneshot import OneShot

_PERIOD_SAMPLES = 6
"""Slots looked at to find a cron schedule's shortest period."""


def _period(schedule: Schedule, now: datetime) -> timedelta | None:
    """The shortest gap between the next few slots; ``None`` for schedules with fewer than two."""
    if isinstance(schedule, IntervalSchedule):
        return schedule.interval
    if isinstance(schedule, OneShot):
        return None
    slots: list[datetime] = []
    cursor: datetime | None = now
    while cursor is not None and len(slots) < _PERIOD_SAMPLES:
        cursor = schedule.next_after(cursor)
        if cursor is not None:
            slots.append(cursor)
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    return min(gaps) if gaps else None


def _seconds(value: timedelta) -> str:
    return f"{int(value.total_seconds())}s"


def warnings(spec: CronConfigSpec, schedule: Schedule, now: datetime) -> list[tuple[str, str]]:
    """(field path, message) of every risk of a valid spec."""
    found: list[tuple[str, str]] = []
    period = _period(schedule, now)
    if period is not None:
        timeout = timedelta(seconds=spec.timeout_seconds)
        if spec.concurrency_policy == ConcurrencyPolicy.ALLOW and timeout > period:
            found.append(
                (
                    "spec.timeoutSeconds",
                    f"{spec.timeout_seconds}s is longer than the schedule's period ({_seconds(period)}) with "
                    "concurrencyPolicy Allow: slow runs overlap and can pile up",
                )
            )
        if timedelta(seconds=spec.jitter_seconds) > period:
            found.append(
                (
                    "spec.jitterSeconds",
                    f"{spec.jitter_seconds}s is larger than the schedule's period ({_seconds(period)}): "
                    "a slot's run can start after the next slot's",
                )
            )
    deadline = spec.starting_deadline_seconds
    if deadline is not None and deadline < spec.jitter_seconds:
        found.append(
            (
                "spec.startingDeadlineSeconds",
                f"{deadline}s is smaller than jitterSeconds ({spec.jitter_seconds}s): a run delayed by "
                "jitter can be past its deadline and skipped (e.g. when caught up after downtime)",
            )
        )
    return found
