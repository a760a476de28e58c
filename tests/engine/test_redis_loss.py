"""Redis restarted empty or flushed: the database fence holds, and no skip is a made-up reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.engine import handlers
from tests.engine.harness import Cluster, uid_preferring, work_spec

END = datetime.max.replace(tzinfo=UTC)


async def three_replicas(cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        await cluster.replica(name)
    await cluster.clock.advance(2)


async def test_a_flush_between_claim_and_fire_runs_every_slot_once(cluster: Cluster) -> None:
    await three_replicas(cluster)
    names = []
    for i, policy in enumerate(["Allow", "Forbid", "Replace"] * 3):
        name = f"flush-{i}"
        await cluster.apply(name, work_spec("* * * * * *", concurrencyPolicy=policy))
        names.append(name)
    start = cluster.clock.now()
    for _ in range(3):  # claims are in the database, leases and heartbeats vanish
        await cluster.clock.advance(2.7)
        await cluster.flush_leases()
    await cluster.clock.advance(15)
    end = cluster.clock.now() - timedelta(seconds=2)
    for name in names:
        runs = [r for r in cluster.runs(name) if start + timedelta(seconds=2) < r.scheduled_for < end]
        seconds = {r.scheduled_for for r in runs}
        assert len(seconds) == len(runs), f"{name}: a slot recorded twice"
        assert len(runs) >= 10, f"{name}: slots missing"
        assert {(str(r.status), r.reason) for r in runs} == {("Succeeded", None)}, name
        assert all(r.started_at == r.scheduled_for for r in runs), f"{name}: not on time"
    assert set(handlers.calls_per_attempt().values()) == {1}


async def test_a_running_lease_lost_in_a_flush_is_taken_again(cluster: Cluster) -> None:
    """Forbid still holds across replicas after a flush: the runner holds its lease again."""
    await three_replicas(cluster)
    uid = uid_preferring("a", ["a", "b", "c"])
    await cluster.apply("long", work_spec("* * * * * *", seconds=5.5), uid=uid)
    await cluster.clock.advance_to(cluster.clock.now().replace(second=10, microsecond=300_000))
    await cluster.flush_leases()
    await cluster.clock.advance(15)
    runs = cluster.runs("long")
    ran = [r for r in runs if r.started_at is not None]
    for i, r in enumerate(ran):  # never two attempts at once
        for o in ran[i + 1 :]:
            assert r.finished_at is not None and r.finished_at <= o.started_at, (r, o)
    for r in runs:
        if r.reason == "ConcurrencyForbid":
            assert any(o.started_at <= r.scheduled_for < (o.finished_at or END) for o in ran), r
    assert set(handlers.calls_per_attempt().values()) == {1}
