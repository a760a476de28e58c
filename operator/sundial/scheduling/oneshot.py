"""``runAt``: a schedule with exactly one slot, so one-shots share every code path with cron."""

from __future__ import annotations

from datetime import datetime

from sundial.scheduling.base import Schedule, to_utc


class OneShot(Schedule):
    __slots__ = ("at", "expression", "tz")

    def __init__(self, at: datetime) -> None:
        self.at = to_utc(at)
        self.expression = self.at.isoformat().replace("+00:00", "Z")
        self.tz = "UTC"

    def next_after(self, after: datetime) -> datetime | None:
        return self.at if self.at > to_utc(after) else None

    def prev_before(self, before: datetime) -> datetime | None:
        return self.at if self.at < to_utc(before) else None

    def count_between(self, start: datetime, end: datetime) -> int:
        return 1 if to_utc(start) < self.at <= to_utc(end) else 0
