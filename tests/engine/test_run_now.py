"""``sundial.io/run-now``: one Manual run per distinct annotation value, across restarts."""

from __future__ import annotations

from tests.engine import handlers
from tests.engine.harness import Cluster, work_spec

RUN_NOW = "sundial.io/run-now"
HOURLY = "0 * * * *"
"""Nothing scheduled fires during these tests: every run is a manual one."""


def manual_calls() -> list[object]:
    return [c["slot"] for c in handlers.CALLS if c["trigger"] == "Manual"]


async def test_each_distinct_value_fires_exactly_one_manual_run(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("button", work_spec(HOURLY))
    await cluster.clock.advance(5)
    assert handlers.CALLS == []
    await cluster.apply("button", work_spec(HOURLY), annotations={RUN_NOW: "v1"})
    pressed_at = cluster.clock.now()
    await cluster.clock.advance(2)
    runs = cluster.runs("button")
    assert [(r.trigger, r.status, r.attempt) for r in runs] == [("Manual", "Succeeded", 1)]
    assert runs[0].started_at is not None
    assert abs((runs[0].started_at - pressed_at).total_seconds()) < 0.01  # at once, not at a slot
    # the same value again (another change of the object, a resync): nothing new
    await cluster.apply("button", work_spec(HOURLY, context={"more": 1}), annotations={RUN_NOW: "v1"})
    await cluster.clock.advance(2)
    assert len(cluster.runs("button")) == 1
    # a new value: one more run
    await cluster.apply("button", work_spec(HOURLY), annotations={RUN_NOW: "v2"})
    await cluster.clock.advance(2)
    assert [(r.trigger, r.status) for r in cluster.runs("button")] == [("Manual", "Succeeded")] * 2
    assert len(manual_calls()) == 2
    last = cluster.status("button")["lastRun"]
    assert (last["trigger"], last["status"]) == ("Manual", "Succeeded")


async def test_a_value_seen_before_a_restart_does_not_fire_again(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("button", work_spec(HOURLY), annotations={RUN_NOW: "v1"})
    await cluster.clock.advance(2)
    assert len(manual_calls()) == 1
    await cluster.stop("a")
    await cluster.replica("b")  # a new process sees the annotation as if for the first time
    await cluster.clock.advance(5)
    assert len(manual_calls()) == 1
    assert [r.trigger for r in cluster.runs("button")] == ["Manual"]
    await cluster.apply("button", work_spec(HOURLY), annotations={RUN_NOW: "v2"})
    await cluster.clock.advance(2)
    assert [(r.trigger, r.replica) for r in cluster.runs("button")] == [("Manual", "a"), ("Manual", "b")]


async def test_a_value_set_while_no_operator_ran_fires_once_at_start(cluster: Cluster) -> None:
    await cluster.apply("button", work_spec(HOURLY), annotations={RUN_NOW: "early"})
    await cluster.replica("a")
    await cluster.clock.advance(2)
    assert [(r.trigger, r.status) for r in cluster.runs("button")] == [("Manual", "Succeeded")]
    await cluster.stop("a")
    await cluster.replica("a")
    await cluster.clock.advance(2)
    assert len(cluster.runs("button")) == 1
    assert len(manual_calls()) == 1


async def test_two_replicas_fire_a_value_once(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.replica("b")
    await cluster.apply("button", work_spec(HOURLY), annotations={RUN_NOW: "v1"})
    await cluster.clock.advance(2)
    assert [r.trigger for r in cluster.runs("button")] == ["Manual"]
    assert len(manual_calls()) == 1


async def test_a_run_now_at_a_slot_instant_still_fires(cluster: Cluster) -> None:
    await cluster.replica("a")
    spec = work_spec("*/10 * * * * *", concurrencyPolicy="Allow")
    await cluster.apply("button", spec)
    await cluster.clock.advance(10)  # exactly 12:00:10: the slot fires now
    await cluster.apply("button", spec, annotations={RUN_NOW: "v1"})
    await cluster.clock.advance(2)
    assert sorted(c["trigger"] for c in handlers.CALLS) == ["Manual", "Schedule"]
    manual = [r for r in cluster.runs("button") if r.trigger == "Manual"]
    assert len(manual) == 1 and manual[0].status == "Succeeded"
