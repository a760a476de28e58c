"""``Forbid`` and ``Replace`` across two replicas sharing PostgreSQL and Redis.

Claiming is sharded: with both replicas alive, every slot of a CronConfig is claimed by its preferred
replica (rendezvous hashing over the live replicas), so one CronConfig alone never runs on two
replicas. To exercise the cross-replica paths deterministically, replica A starts alone and begins an
attempt; then a replica B joins whose name is picked (with the operator's own hashing) so that B is
preferred for the CronConfig's uid. From then on B claims the slots while A's attempt is still
running: B must see that attempt through Redis (the running lease, the cancel marker), not through
its own memory.
"""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from sundial.engine.sharding import Shards
from sundial.store.records import RunRecord
from tests.integration.conftest import StartOperator, runs_of, sundial_env
from tests.support.kube import Kubectl, cronconfig, wait_until

pytestmark = pytest.mark.k8s

A = "replica-a"


def preferred_over(other: str, uids: list[str]) -> str:
    """A replica name that rendezvous hashing prefers over ``other`` for every one of ``uids``."""
    for i in itertools.count():
        name = f"replica-b{i}"
        shards = Shards(name)
        shards.update([other, name])
        if all(shards.owner(uid) == name for uid in uids):
            return name
    raise AssertionError("unreachable")


def uid_of(kubectl: Kubectl, name: str, namespace: str) -> str:
    return str(kubectl.get("cronconfig", name, namespace)["metadata"]["uid"])


def started(run: RunRecord) -> datetime:
    assert run.started_at is not None
    return run.started_at


def running_on(db: str, namespace: str, name: str, replica: str) -> RunRecord | None:
    return next(
        (r for r in runs_of(db, namespace, name) if r.status == "Running" and r.replica == replica), None
    )


def test_forbid_never_overlaps_across_replicas(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    """Forbid holds across replicas: while replica A runs an attempt, replica B (now the claiming
    replica) records each due slot ``Skipped``/``ConcurrencyForbid`` instead of starting a second
    attempt, and runs the next one only after A's has finished. No two attempts of the CronConfig
    overlap in time, whichever replica ran them."""
    db, redis = pg_redis
    env = sundial_env(db, redis, namespace, SUNDIAL_SHUTDOWN_GRACE_SECONDS="1")
    operator_for(env, replica=A)
    kubectl.apply(
        cronconfig(
            "slow",
            namespace,
            schedule="* * * * * *",
            concurrencyPolicy="Forbid",
            context={"sleepSeconds": 8},
            job={"handler": {"name": "sundial.echo"}},
        )
    )
    uid = uid_of(kubectl, "slow", namespace)
    wait_until(lambda: running_on(db, namespace, "slow", A), timeout=20, what="an attempt running on A")
    b = preferred_over(A, [uid])
    operator_for(env, replica=b)
    wait_until(
        lambda: any(r.replica == b and r.started_at for r in runs_of(db, namespace, "slow")),
        timeout=30,
        what=f"{b} to start an attempt once A's has finished",
    )

    runs = runs_of(db, namespace, "slow")
    executed = sorted((r for r in runs if r.started_at is not None), key=started)
    for x, y in itertools.pairwise(executed):
        assert x.finished_at is not None, f"{x.replica}'s attempt still runs while {y.replica}'s started"
        assert y.started_at is not None and y.started_at >= x.finished_at, (
            f"attempts overlap: {x.replica} {x.started_at}..{x.finished_at}, {y.replica} from {y.started_at}"
        )
    assert {r.replica for r in executed} == {A, b}
    skipped = [r for r in runs if r.status == "Skipped"]
    assert skipped and "ConcurrencyForbid" in {r.reason for r in skipped}
    # an undecided slot whose holder's attempt ended after its successor came due is Missed (only
    # the newest slot may run; engine/firing.py); nothing else skips a slot here
    assert {r.reason for r in skipped} <= {"ConcurrencyForbid", "Missed"}, [
        (r.replica, r.scheduled_for, r.reason) for r in skipped
    ]

    def during_an_attempt_on_a(at: datetime | None) -> bool:
        return at is not None and any(
            x.replica == A and x.started_at and x.finished_at and x.started_at <= at <= x.finished_at
            for x in executed
        )

    # B had nothing running itself: only the running lease in Redis can have stopped it
    crossed = [r for r in skipped if r.replica == b and during_an_attempt_on_a(r.finished_at)]
    assert crossed, [(r.replica, r.scheduled_for, r.finished_at) for r in skipped]


def test_replace_cancels_an_attempt_running_on_another_replica(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    """Replace works across replicas: when the next slot starts on replica B, the attempt running on
    replica A is cancelled (``Cancelled``, reason ``Replaced``), through the cancel marker B leaves in
    Redis for A's lease loop, within about a lease-renewal period."""
    db, redis = pg_redis
    env = sundial_env(db, redis, namespace, SUNDIAL_SHUTDOWN_GRACE_SECONDS="1")
    operator_for(env, replica=A)
    kubectl.apply(
        cronconfig(
            "rep",
            namespace,
            schedule="*/2 * * * * *",
            concurrencyPolicy="Replace",
            context={"sleepSeconds": 30},
            job={"handler": {"name": "sundial.echo"}},
        )
    )
    uid = uid_of(kubectl, "rep", namespace)
    wait_until(lambda: running_on(db, namespace, "rep", A), timeout=20, what="an attempt running on A")
    b = preferred_over(A, [uid])
    operator_for(env, replica=b)

    def handed_over() -> tuple[RunRecord, RunRecord] | None:
        executed = sorted(
            (r for r in runs_of(db, namespace, "rep") if r.started_at is not None),
            key=lambda r: r.scheduled_for,
        )
        for x, y in itertools.pairwise(executed):
            if x.replica == A and y.replica == b and x.status != "Running":
                return x, y
        return None

    replaced, successor = wait_until(handed_over, timeout=30, what=f"an attempt on A followed by one on {b}")
    assert (replaced.status, replaced.reason) == ("Cancelled", "Replaced"), replaced
    assert "concurrencyPolicy Replace" in (replaced.error or "")
    assert replaced.finished_at is not None and successor.started_at is not None
    delay = (replaced.finished_at - successor.started_at).total_seconds()
    assert -0.5 < delay < 3.0, f"A's attempt ended {delay:.2f}s after B's successor started"
    # every attempt before the newest was replaced, on whichever replica it ran
    executed = sorted(
        (r for r in runs_of(db, namespace, "rep") if r.started_at is not None), key=lambda r: r.scheduled_for
    )
    older = [r for r in executed if r.scheduled_for < successor.scheduled_for]
    assert older and {(r.status, r.reason) for r in older} == {("Cancelled", "Replaced")}
