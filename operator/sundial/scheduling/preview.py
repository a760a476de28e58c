"""Upcoming fire times for ``sundial next``, from the same code that fires them."""

from __future__ import annotations

from datetime import datetime

from sundial.scheduling.schedule import parse_schedule

__all__ = ["preview"]


def preview(
    expr: str, *, tz: str = "UTC", count: int = 5, after: datetime, anchor: datetime | None = None
) -> list[datetime]:
    """The next ``count`` slots strictly after ``after`` (UTC); raises ScheduleError for bad input.

    ``anchor`` is where ``@every`` counts from; without a CronConfig there is no creation time,
    so it defaults to ``after`` (the first slot is then ``after + interval``).
    """
    schedule = parse_schedule(expr, tz=tz, anchor=after if anchor is None else anchor)
    slots: list[datetime] = []
    cursor: datetime | None = after
    while len(slots) < count and cursor is not None:
        cursor = schedule.next_after(cursor)
        if cursor is not None:
            slots.append(cursor)
    return slots
