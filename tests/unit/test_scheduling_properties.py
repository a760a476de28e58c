"""Property tests: parsing never fails with anything but ScheduleError, and slots agree with
independent references (croniter's matcher, and a straightforward DST mapping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from croniter import croniter
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sundial.scheduling import CronSchedule, Schedule, ScheduleError, parse_schedule

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CRONISH = st.text(alphabet="0123456789*/,-? @abcdefhjlmnorstuvwyLW#\t\u0663", max_size=40)
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Europe/Dublin",
    "Asia/Kolkata",
]


@SETTINGS
@given(
    expr=st.one_of(st.text(max_size=300), CRONISH, CRONISH.map(lambda s: "@every " + s)),
    tz=st.one_of(st.sampled_from([*ZONES, "Europe/Berln", "", "Europe", "../x"]), st.text(max_size=40)),
)
def test_any_string_parses_or_raises_schedule_error(expr: str, tz: str) -> None:
    try:
        schedule = parse_schedule(expr, tz=tz, anchor=ANCHOR)
    except ScheduleError as err:
        assert str(err)
        return
    # Whatever parses must fire.
    assert schedule.next_after(ANCHOR) is not None


def field(low: int, high: int) -> st.SearchStrategy[str]:
    pairs = st.tuples(st.integers(low, high), st.integers(low, high)).filter(lambda p: p[0] < p[1])
    steps = st.integers(2, max(2, high - low))
    atom = st.one_of(
        st.integers(low, high).map(str),
        pairs.map(lambda p: f"{p[0]}-{p[1]}"),
        st.tuples(pairs, steps).map(lambda t: f"{t[0][0]}-{t[0][1]}/{t[1]}"),
    )
    return st.one_of(
        st.just("*"),
        steps.map(lambda n: f"*/{n}"),
        atom,
        st.lists(atom, min_size=2, max_size=4).map(",".join),
    )


CRON6 = st.tuples(
    st.one_of(st.just("0"), field(0, 59)),
    field(0, 59),
    field(0, 23),
    field(1, 31),
    field(1, 12),
    field(0, 7),
).map(" ".join)
INSTANTS = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)


def parsed(expr: str, tz: str) -> Schedule:
    try:
        return parse_schedule(expr, tz=tz, anchor=ANCHOR)
    except ScheduleError:
        assume(False)
        raise


@SETTINGS
@given(expr=CRON6, after=INSTANTS)
def test_utc_slots_match_croniter(expr: str, after: datetime) -> None:
    schedule = parsed(expr, "UTC")
    assert isinstance(schedule, CronSchedule)
    # Where the two day fields meet, croniter treats a field that lists every value (``0-6``) as
    # ``*``; we follow robfig/cron (Kubernetes CronJobs): only ``*``/``?`` is ``*``. Skip those.
    fields = schedule.fields
    assume(fields.days_any or len(fields.days) < 31)
    assume(fields.weekdays_any or len(fields.weekdays) < 7)
    ours: list[datetime] = []
    cursor = after
    for _ in range(6):
        nxt = schedule.next_after(cursor)
        assert nxt is not None and nxt > cursor
        ours.append(nxt)
        cursor = nxt
    reference = croniter(expr, after.replace(tzinfo=None), second_at_beginning=True)
    theirs = [reference.get_next(datetime).replace(tzinfo=UTC) for _ in range(6)]
    assert ours == theirs
    assert all(croniter.match(expr, s.replace(tzinfo=None), second_at_beginning=True) for s in ours)


def reference_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The contract's mapping, written the slow obvious way."""
    first = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first occurrence if repeated
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # Skipped wall time: the first instant whose wall reading is later than it.
    moment = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    while moment.astimezone(zone).replace(tzinfo=None) < wall:
        moment += timedelta(seconds=1)
    return moment


# Instants near the 2026/2027 transitions of the zones above, where the interesting cases are.
NEAR_TRANSITIONS = st.tuples(
    st.sampled_from(
        [
            datetime(2026, 3, 29, 1, tzinfo=UTC),
            datetime(2026, 10, 25, 1, tzinfo=UTC),
            datetime(2026, 3, 8, 7, tzinfo=UTC),
            datetime(2026, 11, 1, 6, tzinfo=UTC),
            datetime(2026, 4, 4, 15, tzinfo=UTC),
            datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
            datetime(2026, 4, 5, 3, tzinfo=UTC),
            datetime(2026, 9, 6, 4, tzinfo=UTC),
        ]
    ),
    st.integers(-2 * 86400 * 10**6, 2 * 86400 * 10**6),
).map(lambda t: t[0] + timedelta(microseconds=t[1]))

SPARSE_CRON6 = st.tuples(
    st.sampled_from(["0", "30", "*/20"]),
    field(0, 59),
    field(0, 23),
    st.sampled_from(["*", "*", "1-31/2", "25,26,27,28,29,30"]),
    st.sampled_from(["*", "3,4,9,10,11"]),
    st.sampled_from(["*", "*", "0", "1-5"]),
).map(" ".join)


@SETTINGS
@given(expr=SPARSE_CRON6, tz=st.sampled_from(ZONES), after=NEAR_TRANSITIONS)
def test_dst_slots_follow_the_contract(expr: str, tz: str, after: datetime) -> None:
    schedule = parsed(expr, tz)
    assert isinstance(schedule, CronSchedule)
    zone = ZoneInfo(tz)
    ours: list[datetime] = []
    cursor = after
    for _ in range(8):
        nxt = schedule.next_after(cursor)
        assert nxt is not None and nxt > cursor
        ours.append(nxt)
        cursor = nxt
    # Reference: croniter enumerates wall times; map each, drop duplicates and passed instants.
    walls = croniter(
        expr, after.astimezone(zone).replace(tzinfo=None) - timedelta(hours=3), second_at_beginning=True
    )
    theirs: list[datetime] = []
    while len(theirs) < 8:
        instant = reference_instant(walls.get_next(datetime), zone)
        if instant > after and (not theirs or instant > theirs[-1]):
            assert not theirs or instant > theirs[-1]
            theirs.append(instant)
    assert ours == theirs
    # Backwards and counting agree with forwards.
    for older, newer in pairwise(ours):
        assert schedule.prev_before(newer) == older
    assert schedule.prev_before(ours[0]) is None or schedule.prev_before(ours[0]) <= after  # type: ignore[operator]
    assert schedule.count_between(after, ours[-1]) == len(ours)


@SETTINGS
@given(seconds=st.integers(1, 10**6), anchor=INSTANTS, offset=st.integers(-(10**12), 10**12))
def test_every_slots_are_anchor_multiples(seconds: int, anchor: datetime, offset: int) -> None:
    schedule = parse_schedule(f"@every {seconds}s", tz="Europe/Berlin", anchor=anchor)
    after = anchor + timedelta(microseconds=offset)
    nxt = schedule.next_after(after)
    assert nxt is not None and nxt > after and nxt > anchor
    k, rest = divmod(nxt - anchor, timedelta(seconds=seconds))
    assert rest == timedelta(0) and k >= 1
    assert nxt - after <= timedelta(seconds=seconds) or after < anchor
    prev = schedule.prev_before(nxt)
    assert prev is None or (prev <= after and nxt - prev == timedelta(seconds=seconds))
