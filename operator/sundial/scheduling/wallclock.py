"""Wall clock <-> instant in one time zone, with the contract's DST rules.

A cron expression names wall-clock times; a slot is an instant. The mapping used everywhere:

* a wall time that occurs once is that instant;
* one that does not exist (spring forward) is the first valid instant after it, i.e. the moment
  of the transition (Europe/Berlin 2026-03-29 02:30 -> 03:00 CEST = 01:00Z);
* one that occurs twice (fall back) is its first occurrence.

This mapping never decreases as the wall time increases, which is what lets a schedule walk wall
times in order and simply skip instants it has already passed; several wall times landing on one
instant are one slot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache

__all__ = ["Zone"]

_SECOND = timedelta(seconds=1)
_SCAN_STEP = timedelta(hours=12)  # no zone changes its offset twice within 12 hours


def _offset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    assert offset is not None  # always set: moment carries a real zone
    return offset


@lru_cache(maxsize=4096)
def _transition(zone: tzinfo, low: datetime, high: datetime) -> datetime:
    """The instant the offset changes, given naive-UTC whole seconds ``low`` < it <= ``high``.

    Zones do not expose their transitions, so bisect on whole seconds (transitions are whole
    seconds); it only runs near a transition and is cached.
    """
    target = _offset(high.replace(tzinfo=UTC).astimezone(zone))
    lo, hi = 0, int((high - low).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        moment = (low + timedelta(seconds=mid)).replace(tzinfo=UTC)
        if _offset(moment.astimezone(zone)) == target:
            hi = mid
        else:
            lo = mid
    return (low + timedelta(seconds=hi)).replace(tzinfo=UTC)


class Zone:
    """An IANA zone (or UTC) with the slot mapping described in the module docstring."""

    __slots__ = ("_fixed", "name", "tzinfo")

    def __init__(self, name: str, zone: tzinfo, *, fixed: timedelta | None = None) -> None:
        self.name = name
        self.tzinfo = zone
        self._fixed = fixed  # set for zones without transitions: a fast path for UTC

    def wall(self, instant: datetime) -> datetime:
        """The naive wall-clock reading of an instant."""
        if self._fixed is not None:
            return instant.replace(tzinfo=None) + self._fixed
        return instant.astimezone(self.tzinfo).replace(tzinfo=None)

    def instant(self, wall: datetime) -> datetime:
        """The slot instant (UTC) for a naive wall time, applying the DST rules."""
        if self._fixed is not None:
            return (wall - self._fixed).replace(tzinfo=UTC)
        first = _offset(wall.replace(tzinfo=self.tzinfo))
        second = _offset(wall.replace(tzinfo=self.tzinfo, fold=1))
        if first >= second:  # unique, or repeated (fold=0 is the first occurrence)
            return (wall - first).replace(tzinfo=UTC)
        # Skipped: the transition lies after wall-as-new-offset and at or before wall-as-old-offset.
        return _transition(self.tzinfo, wall - second, wall - first)

    def _repeat_start(self, instant: datetime, local: datetime) -> tuple[datetime, timedelta] | None:
        """If ``instant`` is in the second pass of a repeated hour: that pass's start, old offset."""
        if not local.fold:
            return None
        old = _offset(local.replace(fold=0))
        new = _offset(local)
        if old == new:
            return None
        high = instant.replace(tzinfo=None, microsecond=0)
        return _transition(self.tzinfo, high - (old - new), high), old

    def first_wall(self, after: datetime) -> datetime:
        """A wall time (whole seconds) such that every earlier wall time maps to <= ``after``."""
        if self._fixed is not None:
            return (after.replace(tzinfo=None) + self._fixed).replace(microsecond=0)
        local = after.astimezone(self.tzinfo)
        repeat = self._repeat_start(after, local)
        if repeat is not None:
            # Wall times of the repeated hour already fired on its first pass: resume after it.
            start, old = repeat
            return start.replace(tzinfo=None) + old
        return local.replace(tzinfo=None, microsecond=0)

    def last_wall(self, before: datetime) -> datetime:
        """A wall time (whole seconds) such that every later wall time maps to >= ``before``."""
        if self._fixed is not None:
            return (before.replace(tzinfo=None) + self._fixed).replace(microsecond=0)
        local = before.astimezone(self.tzinfo)
        repeat = self._repeat_start(before, local)
        if repeat is not None:
            # Every wall time of the repeated hour fired on its first pass, i.e. before ``before``.
            start, old = repeat
            return start.replace(tzinfo=None) + old - _SECOND
        return local.replace(tzinfo=None, microsecond=0)

    def gaps(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """Skipped wall ranges ``[first, last]`` whose transition lies in ``[start, end]``.

        ``last`` is the first valid wall time after the gap; all of them map to one instant.
        """
        if self._fixed is not None:
            return []
        found: list[tuple[datetime, datetime]] = []
        low = start.replace(microsecond=0) - _SECOND
        low_offset = _offset(low.astimezone(self.tzinfo))
        while low < end:
            high = min(low + _SCAN_STEP, end.replace(microsecond=0) + _SECOND)
            high_offset = _offset(high.astimezone(self.tzinfo))
            if high_offset > low_offset:
                moment = _transition(self.tzinfo, low.replace(tzinfo=None), high.replace(tzinfo=None))
                naive = moment.replace(tzinfo=None)
                found.append((naive + low_offset, naive + high_offset))
            low, low_offset = high, high_offset
        return found
