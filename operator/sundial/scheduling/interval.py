"""``@every`` schedules: fixed elapsed-time steps from an anchor, blind to time zones and DST."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache

from sundial.scheduling.base import Schedule, ScheduleError, to_utc

__all__ = ["MAX_INTERVAL", "IntervalSchedule", "parse_interval"]

MAX_INTERVAL = timedelta(hours=87_600)  # ten years; longer is a typo, not a schedule
_INTERVAL_RE = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_EXAMPLES = "like 90s, 5m or 1h30m"


@lru_cache(maxsize=1024)
def parse_interval(text: str) -> timedelta:
    """Parse ``90s``, ``5m``, ``1h30m``: whole numbers of hours, minutes, seconds, in that order."""
    if not text:
        raise ScheduleError(f"@every needs an interval, {_EXAMPLES}")
    match = _INTERVAL_RE.fullmatch(text.lower())
    if match is None or not any(match.groups()):
        raise ScheduleError(
            f"@every interval {text!r} is not valid: use whole numbers of h, m and s, {_EXAMPLES}"
        )
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    # Compare in integers first: huge digit strings must not overflow timedelta.
    total = hours * 3600 + minutes * 60 + seconds
    if total < 1:
        raise ScheduleError("@every interval must be at least 1s")
    if total > MAX_INTERVAL.total_seconds():
        raise ScheduleError(f"@every interval must be at most {int(MAX_INTERVAL.total_seconds()) // 3600}h")
    return timedelta(seconds=total)


class IntervalSchedule(Schedule):
    """Slots are exactly ``anchor + k * interval`` for k >= 1.

    The anchor is the CronConfig's creationTimestamp, so every replica agrees. k starts at 1: the
    creation instant itself is not a slot, so a new ``@every 1h`` first fires an hour after it
    was created, as with robfig/cron's ``@every``.
    """

    __slots__ = ("anchor", "expression", "interval", "tz")

    def __init__(self, expression: str, tz: str, *, anchor: datetime, interval: timedelta) -> None:
        self.expression = expression
        self.tz = tz
        self.anchor = to_utc(anchor)
        self.interval = interval

    def _steps_until(self, moment: datetime) -> int:
        """The number of slots at or before ``moment`` (k of the last one, 0 if none)."""
        return max((moment - self.anchor) // self.interval, 0)

    def _slot(self, k: int) -> datetime | None:
        try:
            return self.anchor + k * self.interval
        except OverflowError:
            return None

    def next_after(self, after: datetime) -> datetime | None:
        return self._slot(self._steps_until(to_utc(after)) + 1)

    def prev_before(self, before: datetime) -> datetime | None:
        before = to_utc(before)
        k = self._steps_until(before)
        if k >= 1 and self._slot(k) == before:
            k -= 1
        return self._slot(k) if k >= 1 else None

    def count_between(self, start: datetime, end: datetime) -> int:
        start, end = to_utc(start), to_utc(end)
        return max(self._steps_until(end) - self._steps_until(start), 0)
