"""Missed-run planning after downtime: each policy, deadlines, and bounded work."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from sundial.scheduling import MissedPlan, MissedRunPolicy, parse_schedule, plan_missed

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
HOURLY = parse_schedule("0 * * * *", anchor=ANCHOR)
LAST = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)  # the last slot that was handled
NOW = datetime(2026, 5, 1, 5, 30, tzinfo=UTC)  # down for 5.5h: missed 01:00 .. 05:00


def h(hour: int) -> datetime:
    return datetime(2026, 5, 1, hour, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("policy", "deadline", "run", "skip"),
    [
        ("Skip", None, [], [1, 2, 3, 4, 5]),
        ("Skip", 3600, [], [1, 2, 3, 4, 5]),
        ("RunOnce", None, [5], [1, 2, 3, 4]),
        ("RunOnce", 3600, [5], [1, 2, 3, 4]),  # 05:00 is 30 min old
        ("RunOnce", 600, [], [1, 2, 3, 4, 5]),  # even the newest is too old
        ("RunAll", None, [1, 2, 3, 4, 5], []),
        ("RunAll", 3 * 3600, [3, 4, 5], [1, 2]),  # 02:00 is 3.5h old
        ("RunAll", int(2.5 * 3600), [3, 4, 5], [1, 2]),  # 03:00 is exactly 2.5h old: still runs
        ("RunAll", 600, [], [1, 2, 3, 4, 5]),
    ],
)
def test_policies(policy: MissedRunPolicy, deadline: int | None, run: list[int], skip: list[int]) -> None:
    plan = plan_missed(HOURLY, last_slot=LAST, now=NOW, policy=policy, starting_deadline_seconds=deadline)
    assert plan == MissedPlan(run=[h(x) for x in run], skip=[h(x) for x in skip], truncated=0)


def test_run_all_is_capped_to_the_newest() -> None:
    plan = plan_missed(
        HOURLY, last_slot=LAST, now=NOW, policy="RunAll", starting_deadline_seconds=None, cap=2
    )
    assert plan.run == [h(4), h(5)]
    assert plan.skip == [h(1), h(2), h(3)]


def test_nothing_missed() -> None:
    for last in (None, NOW, NOW + timedelta(hours=1), h(5)):
        plan = plan_missed(HOURLY, last_slot=last, now=NOW, policy="RunAll", starting_deadline_seconds=None)
        assert plan == MissedPlan()


def test_slot_due_exactly_now_is_included() -> None:
    plan = plan_missed(HOURLY, last_slot=h(4), now=h(5), policy="RunOnce", starting_deadline_seconds=0)
    assert plan == MissedPlan(run=[h(5)], skip=[])


def test_interval_schedule() -> None:
    every = parse_schedule("@every 90s", anchor=LAST)
    plan = plan_missed(
        every, last_slot=LAST, now=LAST + timedelta(minutes=6), policy="RunAll", starting_deadline_seconds=200
    )
    step = timedelta(seconds=90)
    # Slots at 1:30, 3:00, 4:30, 6:00 (= now); 1:30 is 270s old, past the 200s deadline.
    assert plan.run == [LAST + 2 * step, LAST + 3 * step, LAST + 4 * step]
    assert plan.skip == [LAST + step]


@pytest.mark.parametrize(
    ("expr", "tz", "policy", "total"),
    [
        ("* * * * * *", "UTC", "Skip", 30 * 86400),
        ("* * * * * *", "UTC", "RunAll", 30 * 86400),
        ("* * * * * *", "Europe/Berlin", "RunOnce", 30 * 86400 + 3600),  # March 2026 has 31 days
        ("@every 1s", "UTC", "RunAll", 30 * 86400),
    ],
)
def test_huge_gaps_are_bounded(expr: str, tz: str, policy: MissedRunPolicy, total: int) -> None:
    """A per-second schedule after a month of downtime: a bounded plan, computed quickly."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    now = start + timedelta(seconds=total)
    schedule = parse_schedule(expr, tz=tz, anchor=start)
    began = time.perf_counter()
    plan = plan_missed(schedule, last_slot=start, now=now, policy=policy, starting_deadline_seconds=None)
    assert time.perf_counter() - began < 2.0
    ran = {"Skip": 0, "RunOnce": 1, "RunAll": 100}[policy]
    assert len(plan.run) == ran
    assert len(plan.skip) == 1000
    assert plan.truncated == total - ran - 1000
    # The newest slots are kept, in order, with no gaps.
    kept = plan.skip + plan.run
    assert kept[-1] == now
    assert all(b - a == timedelta(seconds=1) for a, b in pairwise(kept))


def test_max_skipped_is_adjustable() -> None:
    plan = plan_missed(
        HOURLY, last_slot=LAST, now=NOW, policy="RunOnce", starting_deadline_seconds=None, max_skipped=2
    )
    assert plan == MissedPlan(run=[h(5)], skip=[h(3), h(4)], truncated=2)
