"""Pure scheduling: when CronConfigs fire. No I/O and no clock.

"Now" is always an argument and every datetime in or out is timezone-aware (results in UTC), so
each replica computes the same slots and the tests need no mocking.
"""

from sundial.scheduling.base import Schedule, ScheduleError
from sundial.scheduling.catchup import MAX_RECORDED_SKIPS, MissedPlan, MissedRunPolicy, plan_missed
from sundial.scheduling.cron import CronSchedule
from sundial.scheduling.interval import IntervalSchedule
from sundial.scheduling.jitter import jitter_offset
from sundial.scheduling.preview import preview
from sundial.scheduling.schedule import MAX_SCHEDULE_LENGTH, load_zone, parse_schedule

__all__ = [
    "MAX_RECORDED_SKIPS",
    "MAX_SCHEDULE_LENGTH",
    "CronSchedule",
    "IntervalSchedule",
    "MissedPlan",
    "MissedRunPolicy",
    "Schedule",
    "ScheduleError",
    "jitter_offset",
    "load_zone",
    "parse_schedule",
    "plan_missed",
    "preview",
]
