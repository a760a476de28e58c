"""A replica dies (SIGKILL): what it claimed or was running is taken over, and nothing runs twice."""

from __future__ import annotations

from datetime import timedelta

from tests.engine import handlers
from tests.engine.harness import Cluster, uid_preferring, uids_preferring, work_spec

TTL = 3.0
"""The cluster's ``lease_ttl_seconds``: how long a dead replica's heartbeat outlives it."""


async def two_replicas(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.replica("b")
    await cluster.clock.advance(2)  # both heartbeats seen: membership is {a, b} on both
    assert cluster.settings["lease_ttl_seconds"] == TTL


async def test_slots_a_dead_replica_claimed_are_adopted_and_run_once(cluster: Cluster) -> None:
    await two_replicas(cluster)
    uid = uid_preferring("a", ["a", "b"])
    await cluster.apply("orphan", work_spec("*/10 * * * * *"), uid=uid)
    slot = cluster.clock.now().replace(second=10, microsecond=0)
    # a claims at slot - 1.5 s (the lookahead); kill it right after, before the fire instant
    await cluster.clock.advance_to(slot - timedelta(seconds=1.4))
    claimed = cluster.runs("orphan")
    assert [(r.scheduled_for, r.status, r.replica) for r in claimed] == [(slot, "Pending", "a")]
    killed_at = cluster.clock.now()
    await cluster.kill("a")
    await cluster.clock.advance(15)
    runs = cluster.runs("orphan")
    adopted = next(r for r in runs if r.scheduled_for == slot)
    assert adopted.id == claimed[0].id  # the same row, moved to b
    assert (adopted.status, adopted.replica) == ("Succeeded", "b")
    assert adopted.started_at is not None
    # late, but only after a's heartbeat expired (at most one lease period before the kill + TTL)
    assert adopted.started_at >= killed_at + timedelta(seconds=TTL - 1.0)
    assert adopted.started_at > slot
    # the later slots are b's now, on time
    later = [r for r in runs if r.scheduled_for > slot]
    assert later and {(r.status, r.replica) for r in later} == {("Succeeded", "b")}
    assert all(r.started_at == r.scheduled_for for r in later)
    assert handlers.calls_per_attempt()[("orphan", slot, 1)] == 1
    assert set(handlers.calls_per_attempt().values()) == {1}


async def test_a_dead_replicas_running_attempt_is_owner_lost_and_retried(cluster: Cluster) -> None:
    await two_replicas(cluster)
    uid = uid_preferring("a", ["a", "b"])
    spec = work_spec("*/30 * * * * *", seconds=10, retry={"limit": 1, "backoffSeconds": 2})
    await cluster.apply("lost", spec, uid=uid)
    slot = cluster.clock.now().replace(second=30, microsecond=0)
    await cluster.clock.advance_to(slot + timedelta(seconds=3))
    assert [(r.status, r.replica) for r in cluster.runs("lost")] == [("Running", "a")]
    killed_at = cluster.clock.now()
    await cluster.kill("a")
    await cluster.clock.advance(25)
    runs = [r for r in cluster.runs("lost") if r.scheduled_for == slot]
    assert [(r.attempt, r.trigger, r.status, r.reason, r.replica) for r in runs] == [
        (1, "Schedule", "Failed", "OwnerLost", "a"),
        (2, "Retry", "Succeeded", None, "b"),
    ]
    lost, retry = runs
    assert lost.finished_at is not None and retry.started_at is not None
    assert lost.finished_at >= killed_at + timedelta(seconds=TTL - 1.0)
    assert "replica a stopped" in (lost.error or "")
    assert (retry.started_at - lost.finished_at).total_seconds() >= 2  # the spec's backoff
    assert handlers.calls_per_attempt("lost") == {("lost", slot, 1): 1, ("lost", slot, 2): 1}


async def test_without_retries_an_owner_lost_attempt_stays_failed(cluster: Cluster) -> None:
    await two_replicas(cluster)
    uid = uid_preferring("a", ["a", "b"])
    await cluster.apply("lost1", work_spec("*/30 * * * * *", seconds=10), uid=uid)
    slot = cluster.clock.now().replace(second=30, microsecond=0)
    await cluster.clock.advance_to(slot + timedelta(seconds=1))
    await cluster.kill("a")
    await cluster.clock.advance(20)
    runs = [r for r in cluster.runs("lost1") if r.scheduled_for == slot]
    assert [(r.attempt, r.status, r.reason) for r in runs] == [(1, "Failed", "OwnerLost")]
    assert handlers.calls_per_attempt("lost1")[("lost1", slot, 1)] == 1


async def test_a_pending_retry_of_a_dead_replica_runs_once_after_its_backoff(cluster: Cluster) -> None:
    await two_replicas(cluster)
    uid = uid_preferring("a", ["a", "b"])
    spec = work_spec("*/30 * * * * *", fail_attempts=1, retry={"limit": 1, "backoffSeconds": 8})
    await cluster.apply("backoff", spec, uid=uid)
    slot = cluster.clock.now().replace(second=30, microsecond=0)
    await cluster.clock.advance_to(slot + timedelta(seconds=1))
    runs = cluster.runs("backoff")
    assert [(r.attempt, r.status, r.replica) for r in runs] == [(1, "Failed", "a"), (2, "Pending", "a")]
    failed_at = runs[0].finished_at
    assert failed_at is not None
    await cluster.kill("a")
    await cluster.clock.advance(20)
    runs = [r for r in cluster.runs("backoff") if r.scheduled_for == slot]
    assert [(r.attempt, r.status, r.replica) for r in runs] == [(1, "Failed", "a"), (2, "Succeeded", "b")]
    assert runs[1].started_at is not None
    assert (runs[1].started_at - failed_at).total_seconds() >= 8  # it kept its backoff
    assert handlers.calls_per_attempt("backoff") == {("backoff", slot, 1): 1, ("backoff", slot, 2): 1}


async def test_a_stopped_replica_gives_back_its_claims_and_nothing_runs_twice(cluster: Cluster) -> None:
    await two_replicas(cluster)
    uid = uid_preferring("a", ["a", "b"])
    await cluster.apply("handover", work_spec("*/5 * * * * *"), uid=uid)
    slot = cluster.clock.now().replace(second=5, microsecond=0)
    await cluster.clock.advance_to(slot - timedelta(seconds=1.4))
    assert [r.status for r in cluster.runs("handover")] == ["Pending"]
    await cluster.stop("a")
    await cluster.clock.advance(20)
    runs = [r for r in cluster.runs("handover") if r.scheduled_for < cluster.clock.now()]
    assert {r.status for r in runs} == {"Succeeded"}, [(r.scheduled_for, r.status, r.replica) for r in runs]
    handed = next(r for r in runs if r.scheduled_for == slot)
    assert (handed.replica, handed.started_at) == ("b", slot)  # given back in time: b ran it on time
    assert set(handlers.calls_per_attempt().values()) == {1}


async def test_an_adopted_slot_past_its_starting_deadline_is_skipped_not_run(cluster: Cluster) -> None:
    await two_replicas(cluster)
    uid = uid_preferring("a", ["a", "b"])
    await cluster.apply("strict", work_spec("*/10 * * * * *", startingDeadlineSeconds=1), uid=uid)
    slot = cluster.clock.now().replace(second=10, microsecond=0)
    await cluster.clock.advance_to(slot - timedelta(seconds=1.4))
    await cluster.kill("a")
    await cluster.clock.advance(15)
    adopted = next(r for r in cluster.runs("strict") if r.scheduled_for == slot)
    assert (adopted.status, adopted.reason, adopted.replica) == ("Skipped", "Missed", "b")
    assert ("strict", slot, 1) not in handlers.calls_per_attempt()


async def test_a_recorded_retry_survives_a_restart_of_its_replica(cluster: Cluster) -> None:
    await cluster.replica("a")
    spec = work_spec("0 * * * *", fail_attempts=1, retry={"limit": 1, "backoffSeconds": 10})
    await cluster.apply("survivor", spec, creationTimestamp="2026-03-01T11:59:59Z")  # slot 12:00 is missed
    await cluster.clock.advance(2)  # RunOnce: the 12:00 slot runs at once as CatchUp and fails
    runs = cluster.runs("survivor")
    assert [(r.attempt, r.trigger, r.status) for r in runs] == [
        (1, "CatchUp", "Failed"),
        (2, "Retry", "Pending"),
    ]
    failed_at = runs[0].finished_at
    assert failed_at is not None
    await cluster.stop("a")
    await cluster.replica("a")  # the same name: a restarted pod
    await cluster.clock.advance(20)
    runs = cluster.runs("survivor")
    assert [(r.attempt, r.status) for r in runs] == [(1, "Failed"), (2, "Succeeded")]
    assert runs[1].started_at is not None
    assert (runs[1].started_at - failed_at).total_seconds() >= 10
    assert set(handlers.calls_per_attempt().values()) == {1}


async def test_a_restarted_replica_takes_over_its_own_previous_incarnations_attempt(cluster: Cluster) -> None:
    await cluster.replica("a")
    spec = work_spec("*/30 * * * * *", seconds=10, retry={"limit": 1, "backoffSeconds": 2})
    await cluster.apply("self", spec)
    slot = cluster.clock.now().replace(second=30, microsecond=0)
    await cluster.clock.advance_to(slot + timedelta(seconds=2))
    await cluster.kill("a")
    await cluster.replica("a")  # restarted at once: its heartbeat looks alive, the row is older than it
    await cluster.clock.advance(20)
    runs = [r for r in cluster.runs("self") if r.scheduled_for == slot]
    assert [(r.attempt, r.status, r.reason) for r in runs] == [
        (1, "Failed", "OwnerLost"),
        (2, "Succeeded", None),
    ]
    assert handlers.calls_per_attempt("self") == {("self", slot, 1): 1, ("self", slot, 2): 1}


async def test_a_dead_owners_next_slot_still_fires_on_time(cluster: Cluster) -> None:
    """Before the membership forgets a, b's fallback claim (half a lookahead later) takes its slot."""
    await two_replicas(cluster)
    uid = uid_preferring("a", ["a", "b"])
    await cluster.apply("ontime", work_spec("*/10 * * * * *"), uid=uid)
    await cluster.clock.advance_to(cluster.clock.now().replace(second=17))
    assert [(r.scheduled_for.second, r.replica) for r in cluster.runs("ontime")] == [(10, "a")]
    await cluster.kill("a")
    await cluster.clock.advance(4)
    nxt = next(r for r in cluster.runs("ontime") if r.scheduled_for.second == 20)
    assert (nxt.status, nxt.replica, nxt.started_at) == ("Succeeded", "b", nxt.scheduled_for)


async def test_a_restarted_replica_runs_the_claim_its_previous_incarnation_left(cluster: Cluster) -> None:
    """Restarted within the lease TTL, a replica adopts its predecessor's claim: never deleted, run once."""
    await cluster.replica("a")
    await cluster.apply("alone", work_spec("*/10 * * * * *", missedRunPolicy="Skip"))
    await cluster.clock.advance(8.6)  # slot 10 claimed (Pending), not fired
    claimed = cluster.runs("alone")
    assert [r.status for r in claimed] == ["Pending"]
    await cluster.kill("a")
    await cluster.clock.advance(3)  # slot 10 passes with no operator
    restarted_at = cluster.clock.now()
    await cluster.replica("a")  # its heartbeat looks alive to others: only it can take the claim
    await cluster.clock.advance(8)
    runs = [r for r in cluster.runs("alone") if r.scheduled_for.second == 10]
    assert [(r.id, str(r.trigger), str(r.status)) for r in runs] == [(claimed[0].id, "Schedule", "Succeeded")]
    assert runs[0].started_at is not None
    assert restarted_at < runs[0].started_at <= restarted_at + timedelta(seconds=2)
    assert set(handlers.calls_per_attempt().values()) == {1}


async def test_a_restarted_replicas_claims_ahead_of_their_instant_fire_on_time(cluster: Cluster) -> None:
    await cluster.replica("a")
    await cluster.apply("ahead", work_spec("*/10 * * * * *"))
    await cluster.clock.advance(8.6)  # slot 10 claimed 1.4 s ahead
    await cluster.kill("a")
    await cluster.replica("a")  # at once: slot 10 is still ahead
    await cluster.clock.advance(12)
    runs = cluster.runs("ahead")
    assert [(r.scheduled_for.second, str(r.status)) for r in runs][:2] == [
        (10, "Succeeded"),
        (20, "Succeeded"),
    ]
    assert runs[0].started_at == runs[0].scheduled_for, "fired at its instant, not late"
    assert set(handlers.calls_per_attempt().values()) == {1}


async def test_an_owner_lost_failure_posts_a_run_failed_event(cluster: Cluster) -> None:
    await two_replicas(cluster)
    uid = uid_preferring("a", ["a", "b"])
    await cluster.apply("evented", work_spec("*/30 * * * * *", seconds=10), uid=uid)
    await cluster.clock.advance_to(cluster.clock.now().replace(second=31))
    await cluster.kill("a")
    await cluster.clock.advance(15)
    assert [(r.status, r.reason) for r in cluster.runs("evented")][:1] == [("Failed", "OwnerLost")]
    assert [e["reason"] for e in cluster.kube.events if e["name"] == "evented"] == ["RunFailed"]


async def test_forbid_is_not_blocked_by_the_lease_of_a_replica_that_restarted(cluster: Cluster) -> None:
    """The lease of an attempt that died with its replica stops blocking once the replica is back."""
    await two_replicas(cluster)
    uid = uid_preferring("a", ["a", "b"])
    await cluster.apply("held", work_spec("* * * * * *", seconds=4), uid=uid)
    await cluster.clock.advance_to(cluster.clock.now().replace(second=10, microsecond=500_000))
    killed_at = cluster.clock.now()
    await cluster.kill("a")  # slot 10 was running on a
    await cluster.replica("a")
    await cluster.clock.advance(12)
    runs = [r for r in cluster.runs("held") if killed_at < r.scheduled_for < killed_at + timedelta(seconds=8)]
    lost = [r for r in cluster.runs("held") if r.reason == "OwnerLost"]
    assert [(r.status, bool(r.started_at and r.started_at < killed_at)) for r in lost] == [("Failed", True)]
    # the first slot after the restart's heartbeat runs; the next ones wait for it (truly running)
    ran = [r for r in runs if r.started_at is not None]
    assert ran and ran[0].scheduled_for <= killed_at + timedelta(seconds=2)
    for r in runs:
        if r.reason == "ConcurrencyForbid":
            assert any(
                o.started_at and o.started_at <= r.scheduled_for < (o.finished_at or r.scheduled_for)
                for o in ran
            )
    assert set(handlers.calls_per_attempt().values()) == {1}


async def test_a_killed_holders_slots_are_undecided_until_its_heartbeat_expires(cluster: Cluster) -> None:
    """Never ConcurrencyForbid on a dead holder's word: the slot waits until its fate is known."""
    await two_replicas(cluster)
    uid = uid_preferring("a", ["a", "b"])
    await cluster.apply("undecided", work_spec("*/2 * * * * *", seconds=1.5), uid=uid)
    await cluster.clock.advance_to(cluster.clock.now().replace(second=10, microsecond=500_000))
    killed_at = cluster.clock.now()
    await cluster.kill("a")  # slot 10 running on a; its lease and heartbeat live on for the TTL
    await cluster.clock.advance(15)
    after = [r for r in cluster.runs("undecided") if r.scheduled_for > killed_at]
    assert after and all(r.replica == "b" for r in after)
    ran = [r for r in after if r.started_at is not None]
    forbid = [r for r in after if r.reason == "ConcurrencyForbid"]
    for r in forbid:  # only while an attempt really ran on b
        assert any(
            o.started_at and o.started_at <= r.scheduled_for < (o.finished_at or r.scheduled_for) for o in ran
        )
    first = min(ran, key=lambda r: r.scheduled_for)
    assert first.scheduled_for.second == 12
    assert first.started_at is not None and first.started_at <= killed_at + timedelta(seconds=TTL + 1.5)
    assert set(handlers.calls_per_attempt().values()) == {1}


async def test_an_adopted_slot_overtaken_by_a_newer_one_is_missed_under_forbid(cluster: Cluster) -> None:
    """Run late beside the newer slots, it would be a ConcurrencyForbid it never met at its instant."""
    await two_replicas(cluster)
    uid = uid_preferring("a", ["a", "b"])
    await cluster.apply("forbid", work_spec("* * * * * *"), uid=uid)
    slot = cluster.clock.now().replace(microsecond=0) + timedelta(seconds=5)
    await cluster.clock.advance_to(slot - timedelta(seconds=1.4))  # a claimed slot, not fired
    claimed = next(r for r in cluster.runs("forbid") if r.scheduled_for == slot)
    assert (claimed.status, claimed.replica) == ("Pending", "a")
    await cluster.kill("a")
    await cluster.clock.advance(20)
    adopted = next(r for r in cluster.runs("forbid") if r.scheduled_for == slot)
    assert (adopted.id, adopted.status, adopted.reason) == (claimed.id, "Skipped", "Missed")
    assert not [r for r in cluster.runs("forbid") if r.reason == "ConcurrencyForbid"]
    assert set(handlers.calls_per_attempt().values()) == {1}


async def test_the_undecided_slots_of_many_configs_are_asked_again_together(cluster: Cluster) -> None:
    """A dead holder of many running leases costs one gate per poll, not one per slot (and a pool)."""
    await two_replicas(cluster)
    names = [f"many-{i}" for i in range(40)]
    for name, uid in zip(names, uids_preferring("a", ["a", "b"], len(names)), strict=True):
        await cluster.apply(name, work_spec("*/2 * * * * *", seconds=1.5), uid=uid)
    await cluster.clock.advance_to(cluster.clock.now().replace(second=10, microsecond=500_000))
    killed_at = cluster.clock.now()
    calls: list[int] = []
    acquire_many = cluster.leases.acquire_many

    async def counted(items, ttl):  # type: ignore[no-untyped-def]
        calls.append(len(items))
        return await acquire_many(items, ttl)

    cluster.leases.acquire_many = counted  # type: ignore[method-assign]
    await cluster.kill("a")
    await cluster.clock.advance(15)
    for name in names:
        after = [r for r in cluster.runs(name) if r.scheduled_for > killed_at]
        ran = [r for r in after if r.started_at is not None]
        assert ran, name
        for r in after:
            if r.reason == "ConcurrencyForbid":  # only while an attempt really ran on b
                assert any(
                    o.started_at and o.started_at <= r.scheduled_for < (o.finished_at or r.scheduled_for)
                    for o in ran
                )
    assert set(handlers.calls_per_attempt().values()) == {1}
    single = sum(1 for n in calls if n == 1)
    assert single <= 10, (single, len(calls))
