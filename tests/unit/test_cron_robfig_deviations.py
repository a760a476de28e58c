"""Each documented deviation from robfig/cron v3 (README, "Schedules and Kubernetes CronJobs").

Each test asks robfig what it does (``hack/robfig``) and shows that sundial does otherwise, on
purpose, as the README says.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sundial.scheduling import ScheduleError
from sundial.scheduling.preview import preview
from tests.support import robfig


def _at(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def _robfig(binary: Path, expr: str, tz: str, after: str, n: int = 3) -> robfig.Answer:
    return robfig.ask(binary, [(expr, tz, _at(after), n)])[0]


def _local(times: list[int], tz: str) -> list[str]:
    return [datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat() for t in times if t]


def _sundial(expr: str, tz: str, after: str, n: int = 3) -> list[str]:
    return [
        t.astimezone(ZoneInfo(tz)).isoformat()
        for t in preview(expr, tz=tz, count=n, after=datetime.fromisoformat(after))
    ]


def test_seven_is_sunday(robfig_next: Path) -> None:
    assert "above maximum" in (
        _robfig(robfig_next, "0 9 * * 7", "UTC", "2026-12-01T00:00:00+00:00").error or ""
    )
    sunday = _robfig(robfig_next, "0 9 * * 0", "UTC", "2026-12-01T00:00:00+00:00")
    assert _sundial("0 9 * * 7", "UTC", "2026-12-01T00:00:00+00:00") == _local(sunday.next, "UTC")
    assert _sundial("0 9 * * 5-7", "UTC", "2026-12-03T00:00:00+00:00") == [
        "2026-12-04T09:00:00+00:00",  # Friday
        "2026-12-05T09:00:00+00:00",
        "2026-12-06T09:00:00+00:00",  # Sunday
    ]


def test_a_step_from_a_day_never_reaches_sunday(robfig_next: Path) -> None:
    """``1/2`` is Mon, Wed, Fri in both: only an explicit 7 is Sunday."""
    theirs = _robfig(robfig_next, "0 9 * * 1/2", "UTC", "2026-12-01T00:00:00+00:00", n=6)
    assert _sundial("0 9 * * 1/2", "UTC", "2026-12-01T00:00:00+00:00", n=6) == _local(theirs.next, "UTC")


def test_a_schedule_that_can_never_fire_is_refused(robfig_next: Path) -> None:
    theirs = _robfig(robfig_next, "0 0 30 2 *", "UTC", "2026-12-01T00:00:00+00:00")
    assert theirs.error is None and theirs.next == [0]  # robfig accepts it and never fires
    with pytest.raises(
        ScheduleError, match="day-of-month 30 never occurs in February: this schedule can never fire"
    ):
        preview("0 0 30 2 *", after=datetime.fromisoformat("2026-12-01T00:00:00+00:00"))


def test_spring_forward_fires_once_at_the_transition(robfig_next: Path) -> None:
    after, tz = "2026-03-27T12:00:00+00:00", "Europe/Berlin"
    assert _local(_robfig(robfig_next, "30 2 * * *", tz, after).next, tz) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-30T02:30:00+02:00",  # robfig skips the 29th
        "2026-03-31T02:30:00+02:00",
    ]
    assert _sundial("30 2 * * *", tz, after) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist: the first valid instant after it
        "2026-03-30T02:30:00+02:00",
    ]


def test_fall_back_fires_once_at_the_first_occurrence(robfig_next: Path) -> None:
    after, tz = "2026-10-23T12:00:00+00:00", "Europe/Berlin"
    assert _local(_robfig(robfig_next, "30 2 * * *", tz, after).next, tz) == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+01:00",  # robfig fires the repeated 02:30 twice
    ]
    assert _sundial("30 2 * * *", tz, after) == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]


@pytest.mark.parametrize("after", ["2026-10-02T12:00:00+00:00", "2026-04-03T00:00:00+00:00"])
def test_lord_howe_half_hour_shift(robfig_next: Path, after: str) -> None:
    """03:00 exists once on both transition days; robfig's hour loop steps over it."""
    tz = "Australia/Lord_Howe"
    theirs = _local(_robfig(robfig_next, "0 3 * * *", tz, after).next, tz)
    ours = _sundial("0 3 * * *", tz, after)
    days = [datetime.fromisoformat(t).date().toordinal() for t in ours]
    assert days == [days[0], days[0] + 1, days[0] + 2] and all("T03:00:00" in t for t in ours), ours
    assert theirs[0] == ours[0] and theirs[1] == ours[2], (theirs, ours)  # robfig skips the transition day


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("1,,2 * * * *", "minute field has an empty list item in '1,,2'"),
        ("* ? * * *", "'?' is only allowed in the day-of-month and day-of-week fields, not hour"),
        ("+5 * * * *", "minute field value '+5' is not a number"),
        ("*/+5 * * * *", "minute field step '+5' is not a number"),
        ("*-5 * * * *", "minute field range '*-5' starts at '*': a range runs from a number"),
        ("@every 1.5h", "@every interval '1.5h' is not valid: use whole numbers of h, m and s"),
        ("@every 500ms", "@every interval '500ms' is not valid"),
        ("@every 30s1m", "@every interval '30s1m' is not valid"),
    ],
)
def test_what_robfig_accepts_and_sundial_refuses(robfig_next: Path, expr: str, message: str) -> None:
    assert _robfig(robfig_next, expr, "UTC", "2026-12-01T00:00:00+00:00").error is None
    with pytest.raises(ScheduleError, match=re.escape(message)):
        preview(expr, after=datetime.fromisoformat("2026-12-01T00:00:00+00:00"))


@pytest.mark.parametrize(
    "expr", ["CRON_TZ=Europe/Berlin 0 9 * * *", "TZ=UTC 0 9 * * *", "cron_tz=UTC @daily", " TZ=UTC 0 9 * * *"]
)
def test_zone_prefixes_say_to_use_spec_time_zone(expr: str) -> None:
    with pytest.raises(
        ScheduleError, match=r"prefix in the schedule is not supported: put the zone in spec.timeZone"
    ):
        preview(expr, after=datetime.fromisoformat("2026-12-01T00:00:00+00:00"))


@pytest.mark.parametrize(
    ("expr", "robfig_spelling"),
    [
        ("@Daily", "@daily"),
        ("@WEEKLY", "@weekly"),
        ("@EVERY 90s", "@every 90s"),
        ("@every 90S", "@every 90s"),
    ],
)
def test_descriptors_in_any_case(robfig_next: Path, expr: str, robfig_spelling: str) -> None:
    after = "2026-12-01T00:00:00+00:00"
    assert _robfig(robfig_next, expr, "UTC", after).error is not None
    assert _sundial(expr, "UTC", after) == _local(
        _robfig(robfig_next, robfig_spelling, "UTC", after).next, "UTC"
    )
