"""Turning ``spec.schedule`` + ``spec.timeZone`` into a :class:`Schedule`, or a precise error."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sundial.scheduling.base import Schedule, ScheduleError, to_utc
from sundial.scheduling.cron import CronSchedule
from sundial.scheduling.cronfields import CronFields, parse_fields
from sundial.scheduling.interval import IntervalSchedule, parse_interval
from sundial.scheduling.wallclock import Zone

__all__ = ["MAX_SCHEDULE_LENGTH", "Schedule", "ScheduleError", "load_zone", "parse_schedule"]

MAX_SCHEDULE_LENGTH = 256
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_ZONE_PREFIX = re.compile(r"(CRON_TZ|TZ)=", re.IGNORECASE)
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu"})


@lru_cache(maxsize=256)
def load_zone(name: str) -> Zone:
    """Load an IANA zone by name; cached because the operator asks for the same few constantly."""
    if name in _UTC_NAMES:
        return Zone(name, UTC, fixed=timedelta(0))
    try:
        zone = ZoneInfo(name)
    except Exception as err:  # ZoneInfo raises KeyError, ValueError or OSError for bad names
        raise ScheduleError(f"unknown time zone {name!r}") from err
    return Zone(name, zone)


@lru_cache(maxsize=1024)
def _cron_fields(text: str) -> CronFields:
    """Parse once per distinct expression: the operator re-reads the same specs all day."""
    if text.startswith("@"):
        word, *rest = text.split(None, 1)
        macro = MACROS.get(word.lower())
        if macro is None:
            raise ScheduleError(f"unknown macro {word!r}")
        if rest:
            raise ScheduleError(f"{word} takes no arguments, got {rest[0]!r}")
        text = macro
    return parse_fields(text.split(), error=ScheduleError)


def parse_schedule(expr: str, *, tz: str = "UTC", anchor: datetime) -> Schedule:
    """Parse a schedule as the contract defines it; raises only :class:`ScheduleError` for bad input.

    ``anchor`` is the CronConfig's creationTimestamp; only ``@every`` uses it. Accepted: 5-field
    cron, 6-field cron with seconds first, the ``@hourly``-style macros, and ``@every 90s`` /
    ``5m`` / ``1h30m``. Schedules that can never fire (``0 0 30 2 *``) are refused.
    """
    anchor = to_utc(anchor)  # a naive anchor is a programming error, not bad user input
    if not isinstance(expr, str):
        raise ScheduleError(f"schedule must be a string, got {type(expr).__name__}")
    if not isinstance(tz, str):
        raise ScheduleError(f"time zone must be a string, got {type(tz).__name__}")
    if len(expr) > MAX_SCHEDULE_LENGTH:
        raise ScheduleError(f"schedule is too long: {len(expr)} characters, at most {MAX_SCHEDULE_LENGTH}")
    text = expr.strip()
    if not text:
        raise ScheduleError("schedule is empty")
    zone = load_zone(tz)
    prefix = _ZONE_PREFIX.match(text)
    if prefix:
        raise ScheduleError(
            f"a {prefix.group(1).upper()}= prefix in the schedule is not supported: "
            "put the zone in spec.timeZone instead (Kubernetes CronJobs refuse it too)"
        )
    word, *rest = text.split(None, 1)
    if word.lower() == "@every":
        interval = parse_interval(rest[0] if rest else "")
        return IntervalSchedule(text, zone.name, anchor=anchor, interval=interval)
    return CronSchedule(text, _cron_fields(text), zone)
