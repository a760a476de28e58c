"""Retries per slot with exponential backoff: which outcomes retry, how often, and when."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from sundial.models.base import format_timestamp
from sundial.store.records import RunRecord
from tests.engine import handlers
from tests.engine.harness import Cluster, work_spec


def once(cluster: Cluster, *, after: float = 2, **kwargs: Any) -> dict[str, Any]:
    """A one-shot ``runAt`` spec due ``after`` seconds from now."""
    spec = work_spec(**kwargs)
    del spec["schedule"]
    spec["runAt"] = format_timestamp(cluster.clock.now() + timedelta(seconds=after))
    return spec


def attempts(runs: list[RunRecord]) -> list[tuple[int, str, str, str | None]]:
    return [(r.attempt, str(r.trigger), str(r.status), r.reason) for r in runs]


def gap(earlier: RunRecord, later: RunRecord) -> float:
    assert earlier.finished_at is not None and later.started_at is not None
    return (later.started_at - earlier.finished_at).total_seconds()


async def test_failed_attempts_retry_with_doubling_backoff_until_one_succeeds(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply(
        "flaky", once(cluster, seconds=1, fail_attempts=2, retry={"limit": 2, "backoffSeconds": 5})
    )
    await cluster.clock.advance(3.5)  # attempt 1 failed at 3 s: its retry is recorded at once
    assert attempts(cluster.runs("flaky")) == [
        (1, "Schedule", "Failed", "JobFailed"),
        (2, "Retry", "Pending", None),
    ]
    await cluster.clock.advance(30)
    runs = cluster.runs("flaky")
    assert attempts(runs) == [
        (1, "Schedule", "Failed", "JobFailed"),
        (2, "Retry", "Failed", "JobFailed"),
        (3, "Retry", "Succeeded", None),
    ]
    assert len({r.scheduled_for for r in runs}) == 1  # retries belong to their slot
    first, second, third = runs
    assert 5 <= gap(first, second) < 5.01
    assert 10 <= gap(second, third) < 10.01
    assert third.result == {"attempt": 3}
    assert [c["attempt"] for c in handlers.CALLS] == [1, 2, 3]
    assert [e["reason"] for e in cluster.kube.events if e["name"] == "flaky"] == ["RunFailed", "RunFailed"]
    last = cluster.status("flaky")["lastRun"]
    assert (last["status"], last["attempt"], last["trigger"]) == ("Succeeded", 3, "Retry")


async def test_retries_stop_at_the_limit(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("hopeless", once(cluster, fail_attempts=99, retry={"limit": 2, "backoffSeconds": 1}))
    await cluster.clock.advance(15)
    assert attempts(cluster.runs("hopeless")) == [
        (1, "Schedule", "Failed", "JobFailed"),
        (2, "Retry", "Failed", "JobFailed"),
        (3, "Retry", "Failed", "JobFailed"),
    ]


async def test_the_backoff_is_capped_by_max_backoff_seconds(cluster: Cluster) -> None:
    await cluster.replica("a")
    retry = {"limit": 3, "backoffSeconds": 5, "maxBackoffSeconds": 8}
    await cluster.apply("capped", once(cluster, fail_attempts=3, retry=retry))
    await cluster.clock.advance(30)
    runs = cluster.runs("capped")
    assert [(r.attempt, str(r.status)) for r in runs] == [
        (1, "Failed"),
        (2, "Failed"),
        (3, "Failed"),
        (4, "Succeeded"),
    ]
    assert [round(gap(a, b), 2) for a, b in itertools.pairwise(runs)] == [5, 8, 8]


async def test_a_limit_of_zero_never_retries(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("noretry", once(cluster, fail_attempts=1, retry={"limit": 0, "backoffSeconds": 1}))
    await cluster.clock.advance(15)
    assert attempts(cluster.runs("noretry")) == [(1, "Schedule", "Failed", "JobFailed")]
    assert len(handlers.CALLS) == 1


async def test_a_timed_out_attempt_is_retried(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply(
        "stuck", once(cluster, seconds=5, timeoutSeconds=1, retry={"limit": 1, "backoffSeconds": 2})
    )
    await cluster.clock.advance(15)
    runs = cluster.runs("stuck")
    assert attempts(runs) == [(1, "Schedule", "TimedOut", "Timeout"), (2, "Retry", "TimedOut", "Timeout")]
    assert 2 <= gap(runs[0], runs[1]) < 2.01


async def test_a_cancelled_attempt_is_never_retried(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply(
        "replaced",
        work_spec(seconds=2.5, concurrencyPolicy="Replace", retry={"limit": 3, "backoffSeconds": 1}),
    )
    await cluster.clock.advance(8.2)
    runs = cluster.runs("replaced")
    cancelled = [r for r in runs if r.status == "Cancelled"]
    assert len(cancelled) >= 6
    assert {r.reason for r in cancelled} == {"Replaced"}
    assert {r.attempt for r in runs} == {1}
    assert not [c for c in handlers.CALLS if c["trigger"] == "Retry"]
