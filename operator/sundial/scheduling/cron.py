"""Cron schedules read in a time zone: wall-clock matches mapped to instants."""

from __future__ import annotations

from datetime import datetime, timedelta

from sundial.scheduling.base import Schedule, to_utc
from sundial.scheduling.cronfields import CronFields
from sundial.scheduling.wallclock import Zone

__all__ = ["CronSchedule"]

_SECOND = timedelta(seconds=1)
_TICK = timedelta(microseconds=1)


class CronSchedule(Schedule):
    """A cron expression in a zone; see :mod:`sundial.scheduling.wallclock` for DST behaviour.

    Holds the already-expanded fields, so a query never re-parses anything.
    """

    __slots__ = ("expression", "fields", "tz", "zone")

    def __init__(self, expression: str, fields: CronFields, zone: Zone) -> None:
        self.expression = expression
        self.tz = zone.name
        self.fields = fields
        self.zone = zone

    def _next(self, after: datetime) -> tuple[datetime, datetime] | None:
        """The first slot after ``after`` and the first wall time that produced it."""
        try:
            wall = self.zone.first_wall(after)
            while True:
                match = self.fields.next_match(wall)
                if match is None:
                    return None
                slot = self.zone.instant(match)
                if slot > after:
                    return match, slot
                wall = match + _SECOND
        except OverflowError:  # the search ran off the end of the calendar
            return None

    def _prev(self, before: datetime) -> tuple[datetime, datetime] | None:
        """The last slot before ``before`` and the last wall time that produced it."""
        try:
            wall = self.zone.last_wall(before)
            while True:
                match = self.fields.prev_match(wall)
                if match is None:
                    return None
                slot = self.zone.instant(match)
                if slot < before:
                    return match, slot
                # Step below every wall time that maps to this slot (a skipped hour maps many).
                wall = min(match - _SECOND, self.zone.wall(slot - _SECOND))
        except OverflowError:
            return None

    def next_after(self, after: datetime) -> datetime | None:
        found = self._next(to_utc(after))
        return None if found is None else found[1]

    def prev_before(self, before: datetime) -> datetime | None:
        found = self._prev(to_utc(before))
        return None if found is None else found[1]

    def count_between(self, start: datetime, end: datetime) -> int:
        start, end = to_utc(start), to_utc(end)
        if end <= start:
            return 0
        first = self._next(start)
        try:
            last = self._prev(end + _TICK)
        except OverflowError:
            last = None
        if first is None or last is None or first[1] > last[1]:
            return 0
        # Every matching wall time between the two yields a slot in range (the mapping is
        # monotonic); a skipped hour's matches collapse into a single slot.
        count = self.fields.count_matches(first[0], last[0])
        for gap_first, gap_last in self.zone.gaps(first[1], last[1]):
            collapsed = self.fields.count_matches(max(gap_first, first[0]), min(gap_last, last[0]))
            if collapsed > 1:
                count -= collapsed - 1
        return count
