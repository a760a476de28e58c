"""Claim, fire, record: the engine's main path on a manual clock."""

from __future__ import annotations

from datetime import timedelta

from sundial.scheduling import jitter_offset
from tests.engine import handlers
from tests.engine.harness import START, Cluster, work_spec


async def test_every_slot_is_claimed_fired_and_recorded_once(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("tick", work_spec())
    await cluster.clock.advance(10.3)  # slot 10's outcome is written within the 0.2 s flush
    runs = [r for r in cluster.runs("tick") if r.status != "Pending"]
    assert len(runs) == 10
    assert {r.status for r in runs} == {"Succeeded"}
    assert all(r.started_at is not None and r.started_at >= r.scheduled_for for r in runs)
    lags = [(r.started_at - r.scheduled_for).total_seconds() for r in runs if r.started_at]
    assert max(lags) < 0.01, lags
    slots = [r.scheduled_for for r in runs]
    assert len(set(slots)) == len(slots)
    assert {r.replica for r in runs} == {"a"}
    assert len(handlers.CALLS) == 10
    status = cluster.status("tick")
    assert status["lastRun"]["status"] == "Succeeded"
    assert status["conditions"][0]["reason"] == "Scheduled"


async def test_dry_run_is_recorded_succeeded_without_calling_the_handler(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("dry", work_spec(dryRun=True))
    await cluster.clock.advance(5.5)  # slots 1..5, and the history flush after the last
    runs = [r for r in cluster.runs("dry") if r.status != "Pending"]
    assert len(runs) == 5
    assert {(r.status, r.reason, r.dry_run) for r in runs} == {("Succeeded", "DryRun", True)}
    assert handlers.CALLS == []
    assert cluster.status("dry")["lastRun"]["status"] == "Succeeded"


async def test_a_suspended_config_fires_nothing_and_says_so(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("sleepy", work_spec(suspend=True))
    await cluster.clock.advance(5.2)
    assert cluster.runs("sleepy") == []
    assert handlers.CALLS == []
    status = cluster.status("sleepy")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Suspended")
    suspended = next(c for c in status["conditions"] if c["type"] == "Suspended")
    assert suspended["status"] == "True"
    assert status.get("nextScheduleTime") is None


async def test_suspending_a_running_config_stops_it(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("pause", work_spec())
    await cluster.clock.advance(3.2)
    calls = len(handlers.CALLS)
    assert calls == 3
    await cluster.apply("pause", work_spec(suspend=True))
    suspended_at = cluster.clock.now()
    await cluster.clock.advance(5)
    assert len(handlers.CALLS) == calls  # a slot claimed ahead is not run either
    late = [r for r in cluster.runs("pause") if r.scheduled_for > suspended_at]
    assert all((r.status, r.reason) == ("Skipped", "Suspended") for r in late), late
    assert len(late) <= 1
    ready = next(c for c in cluster.status("pause")["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Suspended"
    await cluster.apply("pause", work_spec())  # and resuming resumes
    await cluster.clock.advance(3)
    assert len(handlers.CALLS) >= calls + 2


async def test_a_spec_change_takes_effect(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("change", work_spec())
    await cluster.clock.advance(3.2)
    changed_at = cluster.clock.now()
    await cluster.apply("change", work_spec("*/5 * * * * *", context={"version": 2}))
    await cluster.clock.advance(20)
    runs = [r for r in cluster.runs("change") if r.status == "Succeeded"]
    before = [r for r in runs if r.scheduled_for < changed_at]
    after = [r for r in runs if r.scheduled_for > changed_at + timedelta(seconds=1.5)]
    assert len(before) == 3
    assert {r.generation for r in before} == {1}
    assert [r.scheduled_for.second for r in after] == [5, 10, 15, 20]
    assert {r.generation for r in after} == {2}
    assert {
        c["context"].get("version") for c in handlers.CALLS if c["slot"] in {r.scheduled_for for r in after}
    } == {2}
    # only a slot claimed ahead (within the 1.5 s lookahead) may still come from the old schedule
    old_schedule = [r for r in runs if changed_at < r.scheduled_for and r.scheduled_for.second % 5]
    assert len(old_schedule) <= 1
    assert cluster.status("change")["observedGeneration"] == 2


async def test_a_run_records_the_generation_whose_spec_it_ran_with(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("gen", work_spec(context={"version": 1}))
    await cluster.clock.advance(3.2)  # slot 4 is claimed (Pending, generation 1) at 2.5
    await cluster.apply("gen", work_spec(context={"version": 2}))
    await cluster.clock.advance(3)
    slot = START + timedelta(seconds=4)
    call = next(c for c in handlers.CALLS if c["slot"] == slot)
    assert (call["generation"], call["context"]["version"]) == (2, 2)  # it ran with the new spec
    recorded = next(r for r in cluster.runs("gen") if r.scheduled_for == slot)
    assert recorded.status == "Succeeded"
    assert recorded.generation == 2


async def test_delete_stops_firing_and_keeps_the_history(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("gone", work_spec())
    await cluster.clock.advance(4.2)
    await cluster.clock.advance(0.3)  # the history flush
    kept = [r for r in cluster.runs("gone") if r.status == "Succeeded"]
    assert len(kept) == 4
    calls = len(handlers.CALLS)
    deleted_at = cluster.clock.now()
    await cluster.delete("gone")
    await cluster.clock.advance(10)
    assert len(handlers.CALLS) == calls
    runs = cluster.runs("gone")
    assert [r.id for r in runs if r.status == "Succeeded"] == [r.id for r in kept]
    # a slot claimed ahead of the deletion ends Cancelled (Deleted), never runs
    late = [r for r in runs if r.scheduled_for > deleted_at]
    assert all((r.status, r.reason) == ("Cancelled", "Deleted") for r in late), late
    config = cluster.store.get_config(runs[0].config_uid)
    assert config is not None and config.deleted_at is not None


async def test_jitter_delays_each_slot_by_its_stable_offset(cluster: Cluster) -> None:
    await cluster.replica("a")
    body = await cluster.apply("jittery", work_spec("*/10 * * * * *", jitterSeconds=7))
    uid = body["metadata"]["uid"]
    await cluster.clock.advance(60)
    runs = [r for r in cluster.runs("jittery") if r.status == "Succeeded"]
    assert len(runs) >= 5
    offsets = []
    for r in runs:
        assert r.started_at is not None
        expected = jitter_offset(uid, r.scheduled_for, 7)
        actual = (r.started_at - r.scheduled_for).total_seconds()
        assert abs(actual - expected) < 0.01, (r.scheduled_for, actual, expected)
        offsets.append(expected)
    assert len(set(offsets)) > 1  # the offset depends on the slot, not a constant


async def test_status_shows_the_running_attempt_then_its_outcome(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("busy", work_spec("*/10 * * * * *", seconds=4))
    await cluster.clock.advance(12)
    status = cluster.status("busy")
    assert [(a["scheduledTime"], a["replica"]) for a in status["active"]] == [("2026-03-01T12:00:10Z", "a")]
    assert status["lastScheduleTime"] == "2026-03-01T12:00:10Z"
    await cluster.clock.advance(4)
    status = cluster.status("busy")
    assert status["active"] == []
    assert status["lastRun"]["status"] == "Succeeded"
    assert status["lastSuccessfulTime"] == "2026-03-01T12:00:14Z"
    assert status["nextScheduleTime"] == "2026-03-01T12:00:20Z"


async def test_next_schedule_time_moves_on_when_a_slot_fires(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("busy", work_spec("*/10 * * * * *", seconds=4))
    await cluster.clock.advance(12)
    assert cluster.status("busy")["active"]  # slot 10 is running
    assert cluster.status("busy")["nextScheduleTime"] == "2026-03-01T12:00:20Z"


async def test_an_attempt_past_its_timeout_is_timed_out(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("slow", work_spec("*/10 * * * * *", seconds=5, timeoutSeconds=1))
    await cluster.clock.advance(12)
    runs = [r for r in cluster.runs("slow") if r.status != "Pending"]
    assert len(runs) == 1
    run = runs[0]
    assert (run.status, run.reason) == ("TimedOut", "Timeout")
    assert run.started_at is not None and run.finished_at is not None
    assert abs((run.finished_at - run.started_at).total_seconds() - 1.0) < 0.01
    assert "timeoutSeconds=1" in (run.error or "")
    assert [e["reason"] for e in cluster.kube.events if e["name"] == "slow"] == ["RunTimedOut"]
    assert cluster.status("slow")["lastRun"]["status"] == "TimedOut"
