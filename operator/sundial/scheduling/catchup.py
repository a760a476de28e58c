"""What to do about slots that passed while no operator was running."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sundial.scheduling.base import Schedule, to_utc

__all__ = ["MAX_CATCH_UP_SLOTS", "MAX_RECORDED_SKIPS", "MissedPlan", "MissedRunPolicy", "plan_missed"]

MissedRunPolicy = Literal["Skip", "RunOnce", "RunAll"]
MAX_RECORDED_SKIPS = 1000
MAX_CATCH_UP_SLOTS = 100
"""``missedRunPolicy: RunAll`` runs at most this many of the most recent missed slots."""
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class MissedPlan:
    """The decision for the missed slots in ``(last_slot, now]``, all lists oldest first.

    ``run``: slots to run now with trigger ``CatchUp``. ``skip``: slots to record as ``Skipped``
    with reason ``Missed``. ``truncated``: further, older skipped slots that are *not* listed,
    so a per-second schedule after a month of downtime costs bounded memory and rows.
    """

    run: list[datetime] = field(default_factory=list)
    skip: list[datetime] = field(default_factory=list)
    truncated: int = 0


def plan_missed(
    schedule: Schedule,
    *,
    last_slot: datetime | None,
    now: datetime,
    policy: MissedRunPolicy,
    starting_deadline_seconds: int | None,
    cap: int = MAX_CATCH_UP_SLOTS,
    max_skipped: int = MAX_RECORDED_SKIPS,
) -> MissedPlan:
    """Split the slots in ``(last_slot, now]`` into ones to run and ones to record as skipped.

    ``last_slot`` is the newest slot already handled; ``None`` (never ran) means nothing was
    missed. A slot older than ``starting_deadline_seconds`` is never run. ``Skip`` runs nothing;
    ``RunOnce`` runs the newest slot if it is within the deadline; ``RunAll`` runs every slot
    within the deadline, at most the ``cap`` newest. Work is bounded by ``cap + max_skipped``
    slot computations whatever the length of the downtime.
    """
    if last_slot is None:
        return MissedPlan()
    last_slot, now = to_utc(last_slot), to_utc(now)
    if now <= last_slot:
        return MissedPlan()
    run_limit = {"Skip": 0, "RunOnce": 1, "RunAll": max(cap, 0)}[policy]
    deadline = None if starting_deadline_seconds is None else timedelta(seconds=starting_deadline_seconds)

    # Walk back from now: the newest slots are the ones that may run and the ones worth listing.
    newest_first: list[datetime] = []
    want = run_limit + max(max_skipped, 0)
    cursor = schedule.prev_before(now + _TICK)
    while cursor is not None and cursor > last_slot and len(newest_first) < want:
        newest_first.append(cursor)
        cursor = schedule.prev_before(cursor)
    complete = cursor is None or cursor <= last_slot
    total = len(newest_first) if complete else schedule.count_between(last_slot, now)

    run_count = 0
    for slot in newest_first[:run_limit]:
        if deadline is not None and now - slot > deadline:
            break  # older slots are older still
        run_count += 1
    run = newest_first[:run_count]
    skip = newest_first[run_count : run_count + max(max_skipped, 0)]
    return MissedPlan(
        run=run[::-1],
        skip=skip[::-1],
        truncated=max(total - len(run) - len(skip), 0),
    )
