"""``concurrencyPolicy`` Forbid and Replace, on one replica and across two."""

from __future__ import annotations

import itertools
from datetime import datetime

from sundial.store.records import RunRecord
from tests.engine import handlers
from tests.engine.harness import Cluster, uid_preferring, work_spec

LONG = 2.5
"""Seconds an attempt takes: longer than the one-second schedule, so slots overlap."""


def started(runs: list[RunRecord]) -> list[RunRecord]:
    return [r for r in runs if r.started_at is not None]


def intervals(runs: list[RunRecord]) -> list[tuple[datetime, datetime]]:
    """(started, finished) of every attempt that ran to an end, in start order."""
    return sorted((r.started_at, r.finished_at) for r in runs if r.started_at and r.finished_at)


def assert_no_overlap(runs: list[RunRecord]) -> None:
    spans = intervals(runs)
    assert len(spans) >= 2, spans
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, (end, start)


async def test_forbid_never_overlaps_and_skips_the_slots_in_between(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("forbid", work_spec(seconds=LONG, concurrencyPolicy="Forbid"))
    await cluster.clock.advance(12.2)
    runs = cluster.runs("forbid")
    assert_no_overlap(runs)
    ran = started(runs)
    assert [r.scheduled_for.second for r in ran] == [1, 4, 7, 10]
    assert {r.status for r in ran[:-1]} == {"Succeeded"}
    first, last = ran[0].scheduled_for, ran[-1].scheduled_for
    between = [r for r in runs if first < r.scheduled_for < last and r not in ran]
    assert [r.scheduled_for.second for r in between] == [2, 3, 5, 6, 8, 9]
    assert {(r.status, r.reason, r.started_at) for r in between} == {("Skipped", "ConcurrencyForbid", None)}
    assert len(handlers.CALLS) == len(ran)


async def test_replace_cancels_the_running_attempt_when_the_next_slot_fires(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("replace", work_spec(seconds=LONG, concurrencyPolicy="Replace"))
    await cluster.clock.advance(6.3)  # the last cancellation is written within the 0.2 s flush
    runs = cluster.runs("replace")
    done = [r for r in runs if r.scheduled_for.second <= 5]
    assert [r.scheduled_for.second for r in done] == [1, 2, 3, 4, 5]
    assert {(r.status, r.reason) for r in done} == {("Cancelled", "Replaced")}
    by_slot = {r.scheduled_for.second: r for r in runs}
    for second in range(1, 6):
        replaced, successor = by_slot[second], by_slot[second + 1]
        assert replaced.finished_at == successor.started_at  # cancelled the instant the next one fired
    assert not [r for r in runs if r.trigger == "Retry"]
    assert cluster.status("replace")["lastRun"]["status"] == "Cancelled"


async def test_replace_lets_a_short_attempt_finish(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("quick", work_spec(seconds=0.5, concurrencyPolicy="Replace"))
    await cluster.clock.advance(5.7)
    runs = [r for r in cluster.runs("quick") if r.finished_at is not None]
    assert len(runs) == 5
    assert {r.status for r in runs} == {"Succeeded"}


async def test_forbid_holds_across_replicas(cluster: Cluster) -> None:
    """An attempt running on a keeps b, which prefers the CronConfig once it joins, from starting."""
    await cluster.replica("a")
    uid = uid_preferring("b", ["a", "b"])
    await cluster.apply("forbid2", work_spec(seconds=LONG, concurrencyPolicy="Forbid"), uid=uid)
    await cluster.clock.advance(4.2)  # a runs slot 4 until 6.5
    await cluster.replica("b")
    await cluster.clock.advance(10)
    runs = cluster.runs("forbid2")
    assert_no_overlap(runs)
    assert {r.replica for r in started(runs)} == {"a", "b"}
    # b skipped a slot because of the attempt running on a
    a_spans = intervals([r for r in runs if r.replica == "a"])
    blocked_by_a = [
        r
        for r in runs
        if r.replica == "b"
        and (r.status, r.reason) == ("Skipped", "ConcurrencyForbid")
        and any(start <= r.scheduled_for < end for start, end in a_spans)
    ]
    assert blocked_by_a, [(r.scheduled_for, r.status, r.replica) for r in runs]
    assert all(n == 1 for n in handlers.calls_per_attempt().values())


async def test_replace_cancels_an_attempt_running_on_the_other_replica(cluster: Cluster) -> None:
    """b fires the next slot and asks a, through a cancel marker a's lease loop finds, to stop."""
    await cluster.replica("a")
    uid = uid_preferring("b", ["a", "b"])
    await cluster.apply("replace2", work_spec(seconds=LONG, concurrencyPolicy="Replace"), uid=uid)
    await cluster.clock.advance(4.2)
    await cluster.replica("b")
    await cluster.clock.advance(8)
    runs = cluster.runs("replace2")
    replaced_on_a = [
        r for r in runs if r.replica == "a" and (r.status, r.reason) == ("Cancelled", "Replaced")
    ]
    on_b = sorted((r for r in started(runs) if r.replica == "b"), key=lambda r: r.scheduled_for)
    assert replaced_on_a and on_b, [(r.scheduled_for, r.status, r.reason, r.replica) for r in runs]
    handover, successor = replaced_on_a[-1], on_b[0]
    assert handover.started_at and handover.finished_at and successor.started_at
    assert handover.scheduled_for < successor.scheduled_for
    # a's attempt was still running when b's slot fired, and ended because of it ...
    assert handover.started_at < successor.started_at <= handover.finished_at
    # ... within one lease period (1 s with lease_ttl 3), when a's lease loop found the marker
    assert (handover.finished_at - successor.started_at).total_seconds() <= 1.0
    assert {r.replica for r in runs if (r.status, r.reason) == ("Cancelled", "Replaced")} == {"a", "b"}
    assert all(n == 1 for n in handlers.calls_per_attempt().values())


async def test_two_replicas_share_the_slots_of_many_configs(cluster: Cluster) -> None:
    """Heartbeat membership shards CronConfigs over the replicas; each slot still runs once."""
    await cluster.replica("a")
    await cluster.replica("b")
    await cluster.clock.advance(2)  # both heartbeats seen: membership is {a, b} on both
    names = [f"c{i}" for i in range(12)]
    for name in names:
        await cluster.apply(name, work_spec("*/2 * * * * *", concurrencyPolicy="Forbid"))
    await cluster.clock.advance(10.3)
    by_config = {name: {r.replica for r in cluster.runs(name) if r.status == "Succeeded"} for name in names}
    assert all(len(replicas) == 1 for replicas in by_config.values()), by_config  # one preferred each
    assert set().union(*by_config.values()) == {"a", "b"}, by_config
    counts = handlers.calls_per_attempt()
    assert len(handlers.CALLS) == len(names) * 5
    assert set(counts.values()) == {1}


async def test_a_manual_run_blocks_a_forbid_slot_on_its_replica(cluster: Cluster) -> None:
    await cluster.replica("a")
    spec = work_spec("*/10 * * * * *", seconds=5, concurrencyPolicy="Forbid")
    await cluster.apply("manual", spec)
    await cluster.clock.advance(7)
    await cluster.apply("manual", spec, annotations={"sundial.io/run-now": "x"})  # runs 7 .. 12
    await cluster.clock.advance(4)
    slot = next(r for r in cluster.runs("manual") if r.scheduled_for.second == 10)
    assert (slot.status, slot.reason) == ("Skipped", "ConcurrencyForbid")


async def test_a_manual_run_blocks_a_forbid_slot_on_the_other_replica_too(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.replica("b")
    await cluster.clock.advance(2)
    spec = work_spec("*/10 * * * * *", seconds=5, concurrencyPolicy="Forbid")
    await cluster.apply("manual", spec, uid=uid_preferring("b", ["a", "b"]))
    await cluster.clock.advance(5)
    await cluster.apply("manual", spec, annotations={"sundial.io/run-now": "x"})  # a sees it first
    await cluster.clock.advance(4)
    runs = cluster.runs("manual")
    assert [(r.trigger, r.replica) for r in runs if r.trigger == "Manual"] == [("Manual", "a")]
    slot = next(r for r in runs if r.scheduled_for.second == 10)
    assert (slot.status, slot.reason) == ("Skipped", "ConcurrencyForbid")


async def test_status_active_shows_an_attempt_running_on_the_other_replica(cluster: Cluster) -> None:
    await cluster.replica("a")
    uid = uid_preferring("b", ["a", "b"])
    await cluster.apply("shown", work_spec(seconds=8, concurrencyPolicy="Forbid"), uid=uid)
    await cluster.clock.advance(1.5)  # a runs slot 1 until 9
    await cluster.replica("b")  # b prefers the CronConfig from now on and skips slots 4 .. 8
    await cluster.clock.advance(4)
    running = [r for r in cluster.runs("shown") if r.status == "Running"]
    assert [(r.scheduled_for.second, r.replica) for r in running] == [(1, "a")]
    assert any(r.replica == "b" and r.reason == "ConcurrencyForbid" for r in cluster.runs("shown"))
    active = cluster.status("shown").get("active", [])
    assert [(a["scheduledTime"], a["replica"]) for a in active] == [("2026-03-01T12:00:01Z", "a")]
