"""Parsing, DST behaviour and slot arithmetic of sundial.scheduling, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sundial.scheduling import (
    CronSchedule,
    IntervalSchedule,
    Schedule,
    ScheduleError,
    parse_schedule,
    preview,
)

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def z(text: str) -> datetime:
    """A UTC instant from 'YYYY-MM-DD HH:MM[:SS]'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def upcoming(schedule: Schedule, after: datetime, n: int) -> list[datetime]:
    slots: list[datetime] = []
    cursor = after
    for _ in range(n):
        nxt = schedule.next_after(cursor)
        assert nxt is not None
        slots.append(nxt)
        cursor = nxt
    return slots


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "tz", "message"),
    [
        ("61 * * * *", "UTC", "minute field value 61 out of range 0-59"),
        ("0 24 * * *", "UTC", "hour field value 24 out of range 0-23"),
        ("0 0 0 * *", "UTC", "day-of-month field value 0 out of range 1-31"),
        ("0 0 32 * *", "UTC", "day-of-month field value 32 out of range 1-31"),
        ("0 0 * 13 *", "UTC", "month field value 13 out of range 1-12"),
        ("0 0 * * 8", "UTC", "day-of-week field value 8 out of range 0-7"),
        ("60 * * * * *", "UTC", "second field value 60 out of range 0-59"),
        ("0 0 30 2 *", "UTC", "day-of-month 30 never occurs in February: this schedule can never fire"),
        ("0 0 31 4 *", "UTC", "day-of-month 31 never occurs in April: this schedule can never fire"),
        (
            "0 0 30,31 2 *",
            "UTC",
            "day-of-month 30,31 never occurs in February: this schedule can never fire",
        ),
        (
            "0 0 31 4,jun *",
            "UTC",
            "day-of-month 31 never occurs in April or June: this schedule can never fire",
        ),
        ("* * * * * * *", "UTC", "expected 5 or 6 fields, got 7"),
        ("* * * *", "UTC", "expected 5 or 6 fields, got 4"),
        ("hello", "UTC", "expected 5 or 6 fields, got 1"),
        ("@fortnightly", "UTC", "unknown macro '@fortnightly'"),
        ("@daily 5", "UTC", "@daily takes no arguments, got '5'"),
        ("@every 0s", "UTC", "@every interval must be at least 1s"),
        ("@every 0h0m0s", "UTC", "@every interval must be at least 1s"),
        ("@every 87601h", "UTC", "@every interval must be at most 87600h"),
        ("@every", "UTC", "@every needs an interval, like 90s, 5m or 1h30m"),
        (
            "@every 1.5h",
            "UTC",
            "@every interval '1.5h' is not valid: use whole numbers of h, m and s, like 90s, 5m or 1h30m",
        ),
        (
            "@every 30s1m",
            "UTC",
            "@every interval '30s1m' is not valid: use whole numbers of h, m and s, like 90s, 5m or 1h30m",
        ),
        ("* * * * *", "Europe/Berln", "unknown time zone 'Europe/Berln'"),
        ("* * * * *", "", "unknown time zone ''"),
        ("* * * * *", "../etc/passwd", "unknown time zone '../etc/passwd'"),
        ("@every 90s", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("", "UTC", "schedule is empty"),
        ("   ", "UTC", "schedule is empty"),
        ("*" * 257, "UTC", "schedule is too long: 257 characters, at most 256"),
        ("5-1 * * * *", "UTC", "minute field range 5-1 goes backwards"),
        ("0 0 * * sat-sun", "UTC", "day-of-week field range sat-sun goes backwards"),
        ("*/0 * * * *", "UTC", "minute field step must be at least 1, got 0"),
        ("*/x * * * *", "UTC", "minute field step 'x' is not a number"),
        ("1,,2 * * * *", "UTC", "minute field has an empty list item in '1,,2'"),
        ("-5 * * * *", "UTC", "minute field value '-5' is not a number"),
        ("x * * * *", "UTC", "minute field value 'x' is not a number"),
        ("0 0 * foo *", "UTC", "month field value 'foo' is not a number or month name"),
        ("0 0 * * L", "UTC", "day-of-week field value 'L' is not a number or day name"),
        ("0 0 L * *", "UTC", "day-of-month field value 'L' is not a number"),
        ("0 0 * * 1#2", "UTC", "day-of-week field value '1#2' is not a number or day name"),
        ("? * * * *", "UTC", "'?' is only allowed in the day-of-month and day-of-week fields, not minute"),
        ("\u0663 * * * *", "UTC", "minute field value '\u0663' is not a number"),  # Arabic-Indic 3
    ],
)
def test_rejected_with_precise_message(expr: str, tz: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expr, tz=tz, anchor=ANCHOR)
    assert str(caught.value) == message


def test_schedule_error_is_value_error() -> None:
    assert issubclass(ScheduleError, ValueError)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("* * * * *", anchor=datetime(2026, 1, 1))
    schedule = parse_schedule("* * * * *", anchor=ANCHOR)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2026, 1, 1))


# -- accepted syntax ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("0 2 * * *", "2026-05-01 00:00", ["2026-05-01 02:00", "2026-05-02 02:00"]),
        ("*/20 * * * *", "2026-05-01 00:00", ["2026-05-01 00:20", "2026-05-01 00:40", "2026-05-01 01:00"]),
        ("*/5 * * * * *", "2026-05-01 12:00:03", ["2026-05-01 12:00:05", "2026-05-01 12:00:10"]),
        ("30 0 12 * * *", "2026-05-01 00:00", ["2026-05-01 12:00:30", "2026-05-02 12:00:30"]),
        ("@hourly", "2026-05-01 00:00", ["2026-05-01 01:00", "2026-05-01 02:00"]),
        ("@daily", "2026-05-01 00:00", ["2026-05-02 00:00", "2026-05-03 00:00"]),
        ("@midnight", "2026-05-01 00:00", ["2026-05-02 00:00"]),
        ("@weekly", "2026-05-01 00:00", ["2026-05-03 00:00", "2026-05-10 00:00"]),  # Sundays
        ("@monthly", "2026-05-01 00:00", ["2026-06-01 00:00", "2026-07-01 00:00"]),
        ("@yearly", "2026-05-01 00:00", ["2027-01-01 00:00"]),
        ("@annually", "2026-05-01 00:00", ["2027-01-01 00:00"]),
        ("@DAILY", "2026-05-01 00:00", ["2026-05-02 00:00"]),
        ("0 9 * * mon-fri", "2026-05-01 10:00", ["2026-05-04 09:00", "2026-05-05 09:00"]),  # Fri -> Mon
        ("0 9 * * 7", "2026-05-01 00:00", ["2026-05-03 09:00"]),  # 7 is Sunday
        ("0 9 * * 5-7", "2026-05-01 10:00", ["2026-05-02 09:00", "2026-05-03 09:00", "2026-05-08 09:00"]),
        ("0 0 1 jan,JUL *", "2026-05-01 00:00", ["2026-07-01 00:00", "2027-01-01 00:00"]),
        ("0 0 29 2 *", "2026-05-01 00:00", ["2028-02-29 00:00", "2032-02-29 00:00"]),
        ("0 0 29 2 *", "2097-01-01 00:00", ["2104-02-29 00:00"]),  # 2100 is not a leap year
        ("0 0 31 * *", "2026-04-01 00:00", ["2026-05-31 00:00", "2026-07-31 00:00"]),
        # Both day fields restricted: either matches (cron's OR rule). 13th or Fridays.
        ("0 0 13 * 5", "2026-05-01 00:00", ["2026-05-08 00:00", "2026-05-13 00:00", "2026-05-15 00:00"]),
        # One day field is '*' or '?': only the other one counts.
        ("0 0 ? * 5", "2026-05-01 00:00", ["2026-05-08 00:00"]),
        ("0 0 */10 * *", "2026-05-01 00:00", ["2026-05-11 00:00", "2026-05-21 00:00", "2026-05-31 00:00"]),
        ("5/20 * * * *", "2026-05-01 00:00", ["2026-05-01 00:05", "2026-05-01 00:25", "2026-05-01 00:45"]),
        (
            "10-30/10 * * * *",
            "2026-05-01 00:00",
            ["2026-05-01 00:10", "2026-05-01 00:20", "2026-05-01 00:30"],
        ),
        ("  0  2\t* * *  ", "2026-05-01 00:00", ["2026-05-01 02:00"]),
        ("59 23 31 12 *", "2026-05-01 00:00", ["2026-12-31 23:59"]),
    ],
)
def test_utc_slots(expr: str, after: str, expected: list[str]) -> None:
    schedule = parse_schedule(expr, anchor=ANCHOR)
    assert isinstance(schedule, CronSchedule)
    assert upcoming(schedule, z(after), len(expected)) == [z(e) for e in expected]


def test_results_are_utc_and_strictly_after() -> None:
    schedule = parse_schedule("0 * * * *", anchor=ANCHOR)
    slot = schedule.next_after(z("2026-05-01 01:00"))
    assert slot == z("2026-05-01 02:00")
    assert slot is not None and slot.tzinfo is UTC
    assert schedule.next_after(z("2026-05-01 00:59:59.999999")) == z("2026-05-01 01:00")
    # Any aware input works, not only UTC.
    berlin = datetime(2026, 5, 1, 4, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 02:00Z
    assert schedule.next_after(berlin) == z("2026-05-01 03:00")


def test_attributes() -> None:
    schedule = parse_schedule(" 0 2 * * * ", tz="Europe/Berlin", anchor=ANCHOR)
    assert (schedule.expression, schedule.tz) == ("0 2 * * *", "Europe/Berlin")
    every = parse_schedule("@every 90s", tz="Europe/Berlin", anchor=ANCHOR)
    assert (every.expression, every.tz) == ("@every 90s", "Europe/Berlin")


# -- DST ----------------------------------------------------------------------------------------
# Europe/Berlin 2026: 03-29 01:00Z 02:00 CET -> 03:00 CEST; 10-25 01:00Z 03:00 CEST -> 02:00 CET.
# America/New_York 2026: 03-08 07:00Z 02:00 EST -> 03:00 EDT; 11-01 06:00Z 02:00 EDT -> 01:00 EST.

DST_CASES = [
    # Spring forward: the skipped 02:30 fires once at the first valid instant, 03:00 CEST.
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-27 12:00",
        ["2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:30"],
    ),
    # 02:00 does not exist and 03:00 lands on the same instant: one slot.
    (
        "0 * * * *",
        "Europe/Berlin",
        "2026-03-28 23:30",
        ["2026-03-29 00:00", "2026-03-29 01:00", "2026-03-29 02:00"],
    ),
    (
        "*/15 * * * *",
        "Europe/Berlin",
        "2026-03-29 00:30",
        ["2026-03-29 00:45", "2026-03-29 01:00", "2026-03-29 01:15"],
    ),
    (
        "0 0,30 1-3 * * *",
        "Europe/Berlin",
        "2026-03-28 23:30",
        ["2026-03-29 00:00", "2026-03-29 00:30", "2026-03-29 01:00", "2026-03-29 01:30", "2026-03-29 23:00"],
    ),
    # Fall back: the repeated 02:30 fires once, at its first occurrence (CEST).
    ("30 2 * * *", "Europe/Berlin", "2026-10-24 12:00", ["2026-10-25 00:30", "2026-10-26 01:30"]),
    # Hourly by wall clock: the second 02:00 (01:00Z) is not a slot; @every 1h is for elapsed time.
    (
        "0 * * * *",
        "Europe/Berlin",
        "2026-10-24 23:30",
        ["2026-10-25 00:00", "2026-10-25 02:00", "2026-10-25 03:00"],
    ),
    (
        "*/15 * * * *",
        "Europe/Berlin",
        "2026-10-25 00:30",
        ["2026-10-25 00:45", "2026-10-25 02:00", "2026-10-25 02:15"],
    ),
    (
        "0 0,30 1-3 * * *",
        "Europe/Berlin",
        "2026-10-24 23:00",
        ["2026-10-24 23:30", "2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 02:00", "2026-10-25 02:30"],
    ),
    (
        "30 2 * * *",
        "America/New_York",
        "2026-03-07 00:00",
        ["2026-03-07 07:30", "2026-03-08 07:00", "2026-03-09 06:30"],
    ),
    (
        "0 * * * *",
        "America/New_York",
        "2026-03-08 05:30",
        ["2026-03-08 06:00", "2026-03-08 07:00", "2026-03-08 08:00"],
    ),
    ("30 1 * * *", "America/New_York", "2026-10-31 12:00", ["2026-11-01 05:30", "2026-11-02 06:30"]),
    (
        "0 * * * *",
        "America/New_York",
        "2026-11-01 04:30",
        ["2026-11-01 05:00", "2026-11-01 07:00", "2026-11-01 08:00"],
    ),
    (
        "*/20 1 * * *",
        "America/New_York",
        "2026-11-01 04:50",
        ["2026-11-01 05:00", "2026-11-01 05:20", "2026-11-01 05:40", "2026-11-02 06:00"],
    ),
    # Southern hemisphere (Sydney 2026-10-04 02:00 AEST -> 03:00 AEDT at 10-03 16:00Z) and a
    # 30-minute shift (Lord Howe 2026-10-04 02:00 +10:30 -> 02:30 +11 at 10-03 15:30Z).
    (
        "0 2 * * *",
        "Australia/Sydney",
        "2026-10-02 12:00",
        ["2026-10-02 16:00", "2026-10-03 16:00", "2026-10-04 15:00"],
    ),
    (
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-02 12:00",
        ["2026-10-02 15:45", "2026-10-03 15:30", "2026-10-04 15:15"],
    ),
    (
        "45 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-02 12:00",
        ["2026-10-02 16:15", "2026-10-03 15:45", "2026-10-04 15:45"],
    ),
]


@pytest.mark.parametrize(("expr", "tz", "after", "expected"), DST_CASES)
def test_dst_slots(expr: str, tz: str, after: str, expected: list[str]) -> None:
    schedule = parse_schedule(expr, tz=tz, anchor=ANCHOR)
    slots = upcoming(schedule, z(after), len(expected))
    assert slots == [z(e) for e in expected]
    # Walking backwards gives the same slots, and counting agrees with walking.
    back: list[datetime] = []
    cursor = slots[-1] + timedelta(microseconds=1)
    for _ in slots:
        prev = schedule.prev_before(cursor)
        assert prev is not None
        back.append(prev)
        cursor = prev
    assert back[::-1] == slots
    assert schedule.count_between(z(after), slots[-1]) == len(slots)
    assert schedule.slots_between(z(after), slots[-1], limit=100) == slots


@pytest.mark.parametrize(
    ("expr", "tz", "after", "expected"),
    [
        # Inside the repeated hour (second pass, CET): the first pass already fired; resume after it.
        ("*/15 * * * *", "Europe/Berlin", "2026-10-25 01:10", "2026-10-25 02:00"),
        ("*/15 * * * *", "Europe/Berlin", "2026-10-25 01:00", "2026-10-25 02:00"),
        ("30 2 * * *", "Europe/Berlin", "2026-10-25 01:15", "2026-10-26 01:30"),
        ("* * * * * *", "Europe/Berlin", "2026-10-25 01:59:59.5", "2026-10-25 02:00"),
        # Inside the first pass (CEST): the rest of the first pass is still to come.
        ("*/15 * * * *", "Europe/Berlin", "2026-10-25 00:10", "2026-10-25 00:15"),
        ("* * * * * *", "Europe/Berlin", "2026-10-25 00:59:59", "2026-10-25 02:00"),
        # Exactly at the spring transition: 02:xx and 03:00 all were that instant.
        ("*/15 * * * *", "Europe/Berlin", "2026-03-29 01:00", "2026-03-29 01:15"),
        ("* * * * * *", "Europe/Berlin", "2026-03-29 00:59:59", "2026-03-29 01:00"),
        ("* * * * * *", "Europe/Berlin", "2026-03-29 01:00", "2026-03-29 01:00:01"),
    ],
)
def test_next_after_around_transitions(expr: str, tz: str, after: str, expected: str) -> None:
    schedule = parse_schedule(expr, tz=tz, anchor=ANCHOR)
    assert schedule.next_after(z(after)) == z(expected)


@pytest.mark.parametrize(
    ("expr", "tz", "before", "expected"),
    [
        ("*/15 * * * *", "Europe/Berlin", "2026-10-25 01:10", "2026-10-25 00:45"),
        ("*/15 * * * *", "Europe/Berlin", "2026-10-25 02:00", "2026-10-25 00:45"),
        ("* * * * * *", "Europe/Berlin", "2026-10-25 01:30", "2026-10-25 00:59:59"),
        ("*/15 * * * *", "Europe/Berlin", "2026-03-29 01:15", "2026-03-29 01:00"),
        ("*/15 * * * *", "Europe/Berlin", "2026-03-29 01:00", "2026-03-29 00:45"),
        ("* * * * * *", "Europe/Berlin", "2026-03-29 01:00", "2026-03-29 00:59:59"),
        ("30 2 * * *", "Europe/Berlin", "2026-03-29 01:00:01", "2026-03-29 01:00"),
        ("30 2 * * *", "Europe/Berlin", "2026-03-29 01:00", "2026-03-28 01:30"),
    ],
)
def test_prev_before_around_transitions(expr: str, tz: str, before: str, expected: str) -> None:
    schedule = parse_schedule(expr, tz=tz, anchor=ANCHOR)
    assert schedule.prev_before(z(before)) == z(expected)


@pytest.mark.parametrize(
    ("expr", "tz", "start", "end", "count"),
    [
        # Every UTC second of March 2026 is some valid Berlin wall second: all are slots.
        ("* * * * * *", "Europe/Berlin", "2026-03-01 00:00", "2026-04-01 00:00", 31 * 86400),
        # The second pass of the repeated hour is not: 3600 fewer.
        ("* * * * * *", "Europe/Berlin", "2026-10-01 00:00", "2026-11-01 00:00", 31 * 86400 - 3600),
        # One local day each: 23 wall hours (02:00 merges into 03:00), then 24 of 25 real hours.
        ("0 * * * *", "Europe/Berlin", "2026-03-28 22:30", "2026-03-29 21:30", 23),
        ("0 * * * *", "Europe/Berlin", "2026-10-24 21:30", "2026-10-25 22:30", 24),
        # 01:15 .. 01:45 CET, then 02:00-02:45 and 03:00 CEST as one, then 03:15 .. 04:00 CEST.
        ("*/15 * * * *", "Europe/Berlin", "2026-03-29 00:00", "2026-03-29 02:00", 8),
        # 02:15 .. 02:45 CEST, then 03:00 CET.
        ("*/15 * * * *", "Europe/Berlin", "2026-10-25 00:00", "2026-10-25 02:00", 4),
        ("* * * * * *", "UTC", "2026-01-01 00:00", "2027-01-01 00:00", 365 * 86400),
        ("0 0 29 2 *", "UTC", "2026-01-01 00:00", "2034-01-01 00:00", 2),
        ("0 * * * *", "UTC", "2026-01-01 00:00", "2026-01-01 00:00", 0),
        ("0 * * * *", "UTC", "2026-01-01 05:00", "2026-01-01 01:00", 0),
        ("0 * * * *", "UTC", "2026-01-01 00:30", "2026-01-01 00:40", 0),
    ],
)
def test_count_between(expr: str, tz: str, start: str, end: str, count: int) -> None:
    schedule = parse_schedule(expr, tz=tz, anchor=ANCHOR)
    assert schedule.count_between(z(start), z(end)) == count


def test_slots_between_returns_the_first_limit() -> None:
    schedule = parse_schedule("0 * * * *", anchor=ANCHOR)
    start, end = z("2026-01-01 00:00"), z("2026-01-02 00:00")
    assert schedule.slots_between(start, end, limit=3) == [z(f"2026-01-01 0{h}:00") for h in (1, 2, 3)]
    assert len(schedule.slots_between(start, end, limit=100)) == 24  # (start, end]: 01:00 .. 00:00
    assert schedule.slots_between(start, end, limit=0) == []
    assert schedule.count_between(start, end) == 24


# -- @every -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "seconds"),
    [
        ("@every 90s", 90),
        ("@every 5m", 300),
        ("@every 1h30m", 5400),
        ("@every 1h", 3600),
        ("@every 2h0m5s", 7205),
        ("@every 1m30s", 90),
        ("@EVERY 10S", 10),
        ("@every 87600h", 87600 * 3600),
    ],
)
def test_every_intervals(expr: str, seconds: int) -> None:
    schedule = parse_schedule(expr, anchor=ANCHOR)
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.interval == timedelta(seconds=seconds)


def test_every_slots_are_anchor_plus_k_intervals_ignoring_dst() -> None:
    anchor = datetime(2026, 3, 29, 0, 59, 0, 250000, tzinfo=UTC)  # a minute before Berlin springs forward
    schedule = parse_schedule("@every 90s", tz="Europe/Berlin", anchor=anchor)
    step = timedelta(seconds=90)
    assert upcoming(schedule, anchor, 3) == [anchor + step, anchor + 2 * step, anchor + 3 * step]
    # k >= 1: the anchor itself is not a slot, and nothing before it is.
    assert schedule.next_after(anchor - timedelta(days=3)) == anchor + step
    assert schedule.prev_before(anchor + step) is None
    assert schedule.prev_before(anchor + step + timedelta(microseconds=1)) == anchor + step
    assert schedule.next_after(anchor + step) == anchor + 2 * step
    assert schedule.next_after(anchor + step - timedelta(microseconds=1)) == anchor + step
    assert schedule.count_between(anchor - timedelta(hours=1), anchor + 10 * step) == 10
    assert schedule.count_between(anchor + step, anchor + 10 * step + timedelta(seconds=1)) == 9
    # Elapsed time: 40 slots per hour straight through the DST jump.
    assert schedule.count_between(anchor, anchor + timedelta(hours=1)) == 40


def test_every_far_future_is_none_not_an_error() -> None:
    schedule = parse_schedule("@every 87600h", anchor=ANCHOR)
    assert schedule.next_after(datetime(9995, 1, 1, tzinfo=UTC)) is None


def test_cron_far_future_is_none_not_an_error() -> None:
    schedule = parse_schedule("0 0 29 2 *", tz="Europe/Berlin", anchor=ANCHOR)
    assert schedule.next_after(datetime(9997, 1, 1, tzinfo=UTC)) is None
    assert schedule.prev_before(datetime(1, 1, 2, tzinfo=UTC)) is None


# -- preview ------------------------------------------------------------------------------------


def test_preview_cron_in_zone() -> None:
    assert preview("30 2 * * *", tz="Europe/Berlin", count=3, after=z("2026-03-27 12:00")) == [
        z("2026-03-28 01:30"),
        z("2026-03-29 01:00"),
        z("2026-03-30 00:30"),
    ]


def test_preview_every_defaults_anchor_to_after() -> None:
    after = z("2026-05-01 12:00")
    assert preview("@every 90s", after=after, count=2) == [
        after + timedelta(seconds=90),
        after + timedelta(seconds=180),
    ]
    anchor = z("2026-05-01 11:59:30")
    assert preview("@every 90s", after=after, count=1, anchor=anchor) == [z("2026-05-01 12:01")]
    assert preview("@hourly", after=after, count=0) == []


def test_preview_reports_errors() -> None:
    with pytest.raises(ScheduleError, match="unknown macro"):
        preview("@sometimes", after=z("2026-05-01 12:00"))


def test_day_fields_follow_robfig_cron() -> None:
    """Both day fields restricted: OR, even if one lists every value; only '*'/'?' means '*'."""
    every_day = parse_schedule("0 0 */2 * 0-6", anchor=ANCHOR)
    assert every_day.next_after(z("2026-05-01 00:00")) == z("2026-05-02 00:00")
    odd_days = parse_schedule("0 0 */2 * *", anchor=ANCHOR)
    assert odd_days.next_after(z("2026-05-01 00:00")) == z("2026-05-03 00:00")
    star_step_one = parse_schedule("0 0 13 * */1", anchor=ANCHOR)  # '*/1' is '*': the 13th only
    assert star_step_one.next_after(z("2026-05-01 00:00")) == z("2026-05-13 00:00")
