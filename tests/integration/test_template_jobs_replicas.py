"""``template`` jobs across replicas and restarts: the Job outlives the replica that created it.

A replica that dies (SIGKILL) or stops (SIGTERM) while its Job runs leaves the run ``Running``; the
survivor, or the restarted replica, follows the same Job to its outcome and never creates a second
one. ``Forbid`` holds all along: no other slot of the CronConfig starts while the Job runs.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from sundial.store.records import RunRecord
from tests.integration.conftest import StartOperator, runs_of, sundial_env
from tests.integration.test_concurrency_replicas import preferred_over
from tests.integration.test_template_jobs import (
    ended,
    observed,
    run_now,
    timed,  # noqa: F401  (the autouse fixture that prints each test's wall time)
    uid_of,
)
from tests.support import kubelet
from tests.support.kube import Kubectl, cronconfig, wait_until

pytestmark = pytest.mark.k8s

A = "replica-a"


def first_running(db: str, namespace: str, name: str, *, timeout: float = 20) -> RunRecord:
    return wait_until(
        lambda: next((r for r in runs_of(db, namespace, name) if r.status == "Running"), None),
        timeout=timeout,
        what=f"a running attempt of {name}",
    )


def jobs_of_run(kubectl: Kubectl, namespace: str, name: str, run: RunRecord) -> list[dict[str, Any]]:
    return [
        j
        for j in kubelet.jobs_of(kubectl, namespace, name)
        if j["metadata"]["labels"]["sundial.io/run-id"] == str(run.id)
    ]


def job_of(kubectl: Kubectl, namespace: str, name: str, run: RunRecord) -> str:
    jobs = wait_until(lambda: jobs_of_run(kubectl, namespace, name, run), what=f"the Job of run {run.id}")
    assert len(jobs) == 1, [kubelet.name_of(j) for j in jobs]
    return kubelet.name_of(jobs[0])


def one_at_a_time(kubectl: Kubectl, db: str, namespace: str, name: str, run: RunRecord) -> None:
    """While ``run``'s Job runs: it is the CronConfig's only Job and no other slot started."""
    jobs = kubelet.jobs_of(kubectl, namespace, name)
    assert [j["metadata"]["labels"]["sundial.io/run-id"] for j in jobs] == [str(run.id)], [
        (kubelet.name_of(j), j["metadata"]["labels"]) for j in jobs
    ]
    others = [r for r in runs_of(db, namespace, name) if r.id != run.id and r.started_at is not None]
    assert not others, [(r.scheduled_for, r.status, r.replica) for r in others]


def forbidden_between(db: str, namespace: str, name: str, run: RunRecord) -> list[RunRecord]:
    """The runs of slots that came while ``run`` ran (``run`` finished): all must be Skipped."""
    done = next(r for r in runs_of(db, namespace, name) if r.id == run.id)
    assert done.started_at is not None and done.finished_at is not None
    between = [
        r
        for r in runs_of(db, namespace, name)
        if r.id != run.id and done.scheduled_for < r.scheduled_for and r.finished_at
        and r.finished_at <= done.finished_at
    ]  # fmt: skip
    # a slot the killed replica had claimed is taken over late and recorded Missed: skipped too
    skips = {("Skipped", "ConcurrencyForbid"), ("Skipped", "Missed")}
    assert {(r.status, r.reason) for r in between} <= skips, [
        (r.scheduled_for, r.status, r.reason, r.replica) for r in between
    ]
    started_meanwhile = [
        r
        for r in runs_of(db, namespace, name)
        if r.id != run.id and r.started_at and done.started_at <= r.started_at < done.finished_at
    ]
    assert not started_meanwhile, [(r.scheduled_for, r.status, r.replica) for r in started_meanwhile]
    return between


def test_takeover_follows_the_job_of_a_killed_replica(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    env = sundial_env(db, redis, namespace)
    ops = {r: operator_for(env, replica=r) for r in (A, "replica-b")}
    kubectl.apply(
        cronconfig(
            "tk", namespace, schedule="*/2 * * * * *", concurrencyPolicy="Forbid", job=kubelet.job_template()
        )
    )
    run = first_running(db, namespace, "tk")
    job = job_of(kubectl, namespace, "tk", run)
    assert kubelet.running_pod(kubectl, namespace, job)
    owner = run.replica
    assert owner in ops, run
    survivor = next(r for r in ops if r != owner)
    ops[owner].kill()
    killed_at = time.monotonic()

    def taken_over() -> RunRecord | None:
        one_at_a_time(kubectl, db, namespace, "tk", run)
        row = next(r for r in runs_of(db, namespace, "tk") if r.id == run.id)
        assert row.status == "Running", row
        return row if row.replica == survivor else None

    wait_until(taken_over, timeout=20, what=f"{survivor} to take the run over")
    print(f"[timing] takeover {time.monotonic() - killed_at:.1f}s after SIGKILL")
    # the survivor follows the Job for a while: Forbid still holds, no second Job
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        one_at_a_time(kubectl, db, namespace, "tk", run)
        time.sleep(0.3)
    kubelet.finish(kubectl, namespace, job, 0)
    done = ended(db, namespace, "tk", run.id)
    assert (done.status, done.replica) == ("Succeeded", survivor), done
    assert done.result["job"] == job and done.result["succeeded"] == 1, done.result
    assert len(jobs_of_run(kubectl, namespace, "tk", run)) == 1, "never a second Job for the slot"
    skipped = forbidden_between(db, namespace, "tk", run)
    forbidden = [r for r in skipped if r.reason == "ConcurrencyForbid"]
    assert any(r.replica == survivor for r in forbidden), "the survivor skipped slots while following the Job"
    missed = [r for r in skipped if r.reason == "Missed"]
    assert all(r.replica == survivor for r in missed), [(r.scheduled_for, r.replica) for r in missed]
    assert "resumed here" in ops[survivor].logs()


def test_restart_of_every_replica_leaves_the_job_running_and_resumes_it(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    env = sundial_env(db, redis, namespace)
    first = operator_for(env, replica=A)
    kubectl.apply(cronconfig("rs", namespace, schedule="0 0 1 1 *", job=kubelet.job_template()))
    observed(kubectl, "rs", namespace)
    run_now(kubectl, "rs", namespace, "1")
    run = first_running(db, namespace, "rs")
    job = job_of(kubectl, namespace, "rs", run)
    assert kubelet.running_pod(kubectl, namespace, job)
    assert first.stop() == 0
    row = next(r for r in runs_of(db, namespace, "rs") if r.id == run.id)
    assert (row.status, row.finished_at) == ("Running", None), f"detached, not cancelled: {row}"
    (left,) = kubelet.jobs_of(kubectl, namespace, "rs")
    assert kubelet.name_of(left) == job and kubelet.condition(left) is None, "the Job is left running"
    assert kubelet.running_pod(kubectl, namespace, job)

    restarted = operator_for(env, replica=A)
    began = time.monotonic()
    wait_until(lambda: "resumed here" in restarted.logs(), timeout=20, what="the restarted replica to resume")
    print(f"[timing] resumed {time.monotonic() - began:.1f}s after the restart")
    kubelet.finish(kubectl, namespace, job, 0)
    done = ended(db, namespace, "rs", run.id)
    assert (done.status, done.replica) == ("Succeeded", A), done
    assert done.result["job"] == job and done.result["succeeded"] == 1, done.result
    assert [kubelet.name_of(j) for j in kubelet.jobs_of(kubectl, namespace, "rs")] == [job]
    assert len(runs_of(db, namespace, "rs")) == 1


def test_forbid_holds_across_replicas_while_a_job_outlives_the_lease_ttl(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    env = sundial_env(db, redis, namespace)
    operator_for(env, replica=A)
    kubectl.apply(
        cronconfig(
            "fb", namespace, schedule="*/2 * * * * *", concurrencyPolicy="Forbid", job=kubelet.job_template()
        )
    )
    run = first_running(db, namespace, "fb")
    assert run.replica == A
    job = job_of(kubectl, namespace, "fb", run)
    b = preferred_over(A, [uid_of(kubectl, "fb", namespace)])
    operator_for(env, replica=b)
    # B claims the slots from now on; A's Job runs for ~10 s, three lease TTLs
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        one_at_a_time(kubectl, db, namespace, "fb", run)
        time.sleep(0.3)
    kubelet.finish(kubectl, namespace, job, 0)
    done = ended(db, namespace, "fb", run.id)
    assert (done.status, done.replica) == ("Succeeded", A), done
    skipped = forbidden_between(db, namespace, "fb", run)
    by_b = [r for r in skipped if r.replica == b]
    assert len(by_b) >= 2, [(r.scheduled_for, r.replica) for r in skipped]
    # and once it ended, B runs the next slot: a second Job, one at a time
    successor = wait_until(
        lambda: next(
            (r for r in runs_of(db, namespace, "fb") if r.started_at and r.scheduled_for > run.scheduled_for),
            None,
        ),
        timeout=15,
        what="the next slot to start",
    )
    assert successor.replica == b, successor
    assert len(kubelet.unfinished(kubelet.jobs_of(kubectl, namespace, "fb"))) <= 1


def test_replace_ends_the_job_a_restart_left_running_once_a_newer_slot_started(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    """A slot missed while the only replica was down runs (CatchUp) at once after the restart,
    before the old attempt is resumed: on resuming it, Replace must end it (and delete its Job)
    then, not one schedule period later with two Jobs running side by side meanwhile."""
    db, redis = pg_redis
    env = sundial_env(db, redis, namespace)
    first = operator_for(env, replica=A)
    kubectl.apply(
        cronconfig(
            "rr",
            namespace,
            schedule="*/10 * * * * *",
            concurrencyPolicy="Replace",
            job=kubelet.job_template(),
        )
    )
    run = first_running(db, namespace, "rr", timeout=25)
    old = job_of(kubectl, namespace, "rr", run)
    assert first.stop() == 0
    # stay down until the next slot has passed
    wait = (run.scheduled_for.timestamp() + 10.5) - time.time()
    time.sleep(max(0.0, wait))
    operator_for(env, replica=A)
    began = time.monotonic()
    replaced = ended(db, namespace, "rr", run.id, timeout=4.5)  # the next slot comes ~7.5 s later
    print(f"[timing] the old attempt replaced {time.monotonic() - began:.1f}s after the restart")
    assert (replaced.status, replaced.reason) == ("Cancelled", "Replaced"), replaced
    wait_until(
        lambda: old not in {kubelet.name_of(j) for j in kubelet.jobs_of(kubectl, namespace, "rr")},
        timeout=10,
        what=f"the replaced Job {old} deleted",
    )
    newer = [r for r in runs_of(db, namespace, "rr") if r.scheduled_for > run.scheduled_for and r.started_at]
    assert newer and newer[-1].trigger == "CatchUp", [(r.scheduled_for, r.trigger) for r in newer]
    assert len(kubelet.unfinished(kubelet.jobs_of(kubectl, namespace, "rr"))) == 1
