"""``missedRunPolicy`` after downtime: Skip, RunOnce and RunAll, within ``startingDeadlineSeconds``."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sundial.models.base import format_timestamp
from sundial.store.records import RunRecord
from tests.engine import handlers
from tests.engine.harness import Cluster, work_spec

MINUTE = timedelta(minutes=1)


async def created_ago(cluster: Cluster, name: str, ago: timedelta, **spec: Any) -> list[datetime]:
    """Apply an every-minute CronConfig created ``ago`` (no replica runs yet); its missed slots."""
    created = cluster.clock.now() - ago
    await cluster.apply(name, work_spec("* * * * *", **spec), creationTimestamp=format_timestamp(created))
    first = (created + MINUTE).replace(second=0, microsecond=0)
    slots = []
    while first <= cluster.clock.now():
        slots.append(first)
        first += MINUTE
    return slots


def missed_events(cluster: Cluster, name: str) -> list[str]:
    return [e["message"] for e in cluster.kube.events if e["name"] == name and e["reason"] == "MissedRuns"]


def rows(runs: list[RunRecord], slots: list[datetime]) -> list[tuple[str, str, str | None]]:
    by_slot = {r.scheduled_for: r for r in runs}
    return [(str(by_slot[s].trigger), str(by_slot[s].status), by_slot[s].reason) for s in slots]


async def test_skip_records_the_missed_slots_and_runs_none(cluster: Cluster) -> None:
    await cluster.clock.advance(0.5)
    missed = await created_ago(cluster, "skip", timedelta(minutes=5, seconds=10), missedRunPolicy="Skip")
    assert len(missed) == 6
    await cluster.replica("a")
    await cluster.clock.advance(50)  # up to just before the first regular slot
    assert rows(cluster.runs("skip"), missed) == [("CatchUp", "Skipped", "Missed")] * 6
    assert [r.scheduled_for for r in cluster.runs("skip")] == missed
    assert handlers.CALLS == []
    assert missed_events(cluster, "skip") == [
        "6 slot(s) missed while no operator ran, recorded as Skipped (missedRunPolicy Skip)"
    ]
    await cluster.clock.advance(20)  # regular firing goes on
    assert [c["trigger"] for c in handlers.CALLS] == ["Schedule"]


async def test_run_once_runs_the_newest_missed_slot_once(cluster: Cluster) -> None:
    await cluster.clock.advance(0.5)
    missed = await created_ago(cluster, "once", timedelta(minutes=5, seconds=10), missedRunPolicy="RunOnce")
    await cluster.replica("a")
    await cluster.clock.advance(50)
    runs = cluster.runs("once")
    assert rows(runs, missed) == [("CatchUp", "Skipped", "Missed")] * 5 + [("CatchUp", "Succeeded", None)]
    assert [(c["slot"], c["trigger"]) for c in handlers.CALLS] == [(missed[-1], "CatchUp")]
    assert missed_events(cluster, "once") == [
        "5 slot(s) missed while no operator ran, recorded as Skipped (missedRunPolicy RunOnce)"
    ]


async def test_run_all_runs_each_missed_slot_in_order_under_forbid(cluster: Cluster) -> None:
    await cluster.clock.advance(0.5)
    missed = await created_ago(
        cluster, "all", timedelta(minutes=5, seconds=10), missedRunPolicy="RunAll", seconds=5
    )
    await cluster.replica("a")
    await cluster.clock.advance(50)
    runs = cluster.runs("all")
    assert rows(runs, missed) == [("CatchUp", "Succeeded", None)] * 6
    assert [c["slot"] for c in handlers.CALLS] == missed  # oldest first
    ran = [r for r in runs if r.scheduled_for in missed]
    for before, after in itertools.pairwise(ran):
        assert before.finished_at is not None and after.started_at is not None
        assert before.finished_at <= after.started_at  # one after another: Forbid holds
    assert missed_events(cluster, "all") == []  # nothing was skipped


async def test_run_all_honours_the_starting_deadline(cluster: Cluster) -> None:
    await cluster.clock.advance(0.5)
    missed = await created_ago(
        cluster,
        "deadline",
        timedelta(minutes=5, seconds=10),
        missedRunPolicy="RunAll",
        startingDeadlineSeconds=150,
    )
    await cluster.replica("a")
    await cluster.clock.advance(50)
    # 11:55 .. 11:57 are more than 150 s late at start-up; 11:58 .. 12:00 are not
    assert (
        rows(cluster.runs("deadline"), missed)
        == [("CatchUp", "Skipped", "Missed")] * 3 + [("CatchUp", "Succeeded", None)] * 3
    )
    assert [c["slot"] for c in handlers.CALLS] == missed[3:]
    assert missed_events(cluster, "deadline") == [
        "3 slot(s) missed while no operator ran, recorded as Skipped (missedRunPolicy RunAll)"
    ]


async def test_run_all_skips_a_slot_whose_deadline_passes_while_the_others_catch_up(cluster: Cluster) -> None:
    await cluster.clock.advance(0.5)
    missed = await created_ago(
        cluster,
        "queue",
        timedelta(minutes=1, seconds=10),
        missedRunPolicy="RunAll",
        startingDeadlineSeconds=100,
        seconds=120,
    )
    assert [s.strftime("%H:%M") for s in missed] == ["11:59", "12:00"]
    await cluster.replica("a")
    await cluster.clock.advance(125)
    # 11:59 runs at once (60 s late) for 120 s; by then 12:00 is 120 s late, past the deadline
    assert rows(cluster.runs("queue"), missed) == [
        ("CatchUp", "Succeeded", None),
        ("CatchUp", "Skipped", "Missed"),
    ]
    assert [c["slot"] for c in handlers.CALLS] == missed[:1]


async def test_run_once_past_the_starting_deadline_runs_nothing(cluster: Cluster) -> None:
    await cluster.clock.advance(30.5)
    missed = await created_ago(
        cluster,
        "stale",
        timedelta(minutes=2, seconds=10),
        missedRunPolicy="RunOnce",
        startingDeadlineSeconds=20,
    )
    await cluster.replica("a")
    await cluster.clock.advance(20)
    assert rows(cluster.runs("stale"), missed) == [("CatchUp", "Skipped", "Missed")] * len(missed)
    assert handlers.CALLS == []
    assert len(missed_events(cluster, "stale")) == 1


async def test_after_a_restart_the_gap_since_the_last_recorded_slot_is_missed(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("restart", work_spec("* * * * *", missedRunPolicy="RunOnce"))
    await cluster.clock.advance(125)  # 12:01 and 12:02 run
    await cluster.stop("a")
    ran = [r.scheduled_for for r in cluster.runs("restart") if r.status == "Succeeded"]
    assert [s.strftime("%H:%M") for s in ran] == ["12:01", "12:02"]
    await cluster.clock.advance(4 * 60)  # no operator from 12:02:05 to 12:06:06
    await cluster.replica("a")
    await cluster.clock.advance(30)
    runs = {r.scheduled_for.strftime("%H:%M"): r for r in cluster.runs("restart")}
    assert [(k, str(r.trigger), str(r.status), r.reason) for k, r in sorted(runs.items())] == [
        ("12:01", "Schedule", "Succeeded", None),
        ("12:02", "Schedule", "Succeeded", None),
        ("12:03", "CatchUp", "Skipped", "Missed"),
        ("12:04", "CatchUp", "Skipped", "Missed"),
        ("12:05", "CatchUp", "Skipped", "Missed"),
        ("12:06", "CatchUp", "Succeeded", None),
    ]
    assert len(missed_events(cluster, "restart")) == 1
