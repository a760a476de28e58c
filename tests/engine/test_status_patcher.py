"""The status patcher on a manual clock: no-op patches are not sent, the budget is shared."""

from __future__ import annotations

import asyncio

import pytest

from sundial.engine.status import StatusPatcher
from tests.engine.harness import ManualClock, RecordingKube

pytestmark = pytest.mark.asyncio(loop_scope="function")


def _body(uid: str, status: dict[str, object]) -> dict[str, object]:
    return {
        "metadata": {"uid": uid, "namespace": "ns", "name": uid, "resourceVersion": "1"},
        "status": status,
    }


async def test_a_status_that_already_says_it_is_not_patched_again() -> None:
    kube, clock = RecordingKube(), ManualClock()
    patcher = StatusPatcher(kube, clock=clock)  # type: ignore[arg-type]
    patcher.observe("a", _body("a", {"nextScheduleTime": "2026-03-01T12:01:00Z"}))
    patcher.observe("b", _body("b", {"nextScheduleTime": "2026-03-01T12:01:00Z"}))
    patcher.update("a", "ns", "a", {"nextScheduleTime": "2026-03-01T12:01:00Z", "lastRun": None})
    patcher.update("b", "ns", "b", {"nextScheduleTime": "2026-03-01T12:02:00Z"})
    await patcher.drain()
    assert kube.patches == [("ns", "b", {"nextScheduleTime": "2026-03-01T12:02:00Z"})]


async def test_only_the_changed_fields_are_sent() -> None:
    kube, clock = RecordingKube(), ManualClock()
    patcher = StatusPatcher(kube, clock=clock)  # type: ignore[arg-type]
    patcher.observe("a", _body("a", {"nextScheduleTime": "2026-03-01T12:01:00Z", "lastRun": {"id": "1"}}))
    patcher.update("a", "ns", "a", {"nextScheduleTime": "2026-03-01T12:01:00Z", "lastRun": None})
    await patcher.drain()
    assert kube.patches == [("ns", "a", {"lastRun": None})]


async def test_no_op_patches_take_no_budget() -> None:
    """100 unchanged CronConfigs and one changed: the changed one goes at once, not after 100 tokens."""
    kube, clock = RecordingKube(), ManualClock()
    patcher = StatusPatcher(kube, qps=1, clock=clock)  # type: ignore[arg-type]
    same = {"nextScheduleTime": "2026-03-01T12:01:00Z"}
    for i in range(100):
        patcher.observe(f"u{i}", _body(f"u{i}", same))
        patcher.update(f"u{i}", "ns", f"u{i}", dict(same))
    patcher.update("new", "ns", "new", dict(same))
    drain = asyncio.create_task(patcher.drain())
    await clock.advance(0.5)
    assert drain.done()
    assert [name for _, name, _ in kube.patches] == ["new"]


async def test_the_budget_is_split_between_the_live_replicas() -> None:
    kube, clock = RecordingKube(), ManualClock()
    patcher = StatusPatcher(kube, qps=10, min_interval=0, clock=clock)  # type: ignore[arg-type]
    patcher.share(2)
    for i in range(40):
        patcher.update(f"u{i}", "ns", f"u{i}", {"nextScheduleTime": f"2026-03-01T12:{i:02d}:00Z"})
    drain = asyncio.create_task(patcher.drain())
    await clock.advance(0.0)
    burst = len(kube.patches)
    await clock.advance(2.0)
    # 5 a second: the burst of one second's tokens, then 5 more per second
    assert burst <= 5
    assert len(kube.patches) - burst == pytest.approx(10, abs=1)
    patcher.share(1)
    before = len(kube.patches)
    await clock.advance(2.0)
    assert len(kube.patches) - before == pytest.approx(20, abs=1)
    await clock.advance(10.0)
    assert drain.done()


async def test_a_share_under_one_patch_a_second_still_patches() -> None:
    kube, clock = RecordingKube(), ManualClock()
    patcher = StatusPatcher(kube, qps=2, min_interval=0, clock=clock)  # type: ignore[arg-type]
    patcher.share(3)  # 0.67 a second each
    for i in range(3):
        patcher.update(f"u{i}", "ns", f"u{i}", {"nextScheduleTime": f"2026-03-01T12:0{i}:00Z"})
    drain = asyncio.create_task(patcher.drain())
    await clock.advance(10.0)
    assert drain.done() and len(kube.patches) == 3


async def test_a_forced_drain_sends_what_a_drain_waiting_for_budget_holds() -> None:
    """Shutdown: the final changes of a CronConfig whose patch waits for a token are not lost."""
    kube, clock = RecordingKube(), ManualClock()
    patcher = StatusPatcher(kube, qps=1, min_interval=0, clock=clock)  # type: ignore[arg-type]
    for i in range(3):
        patcher.update(f"u{i}", "ns", f"u{i}", {"nextScheduleTime": f"2026-03-01T12:0{i}:00Z"})
    waiting = asyncio.create_task(patcher.drain())
    await clock.advance(0.0)  # one sent, the next waits for its token
    await patcher.drain(force=True)
    waiting.cancel()
    assert sorted(name for _, name, _ in kube.patches) == ["u0", "u1", "u2"]
