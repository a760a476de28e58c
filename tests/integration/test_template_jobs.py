"""``template`` jobs end to end on one replica: real API server, real Job and garbage-collector
controllers, real PostgreSQL and Redis. There is no kubelet: the tests end Pods themselves
(``tests/support/kubelet.py``) and the Job controller turns that into the Job's conditions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sundial.models.base import format_timestamp
from sundial.store.records import RunRecord
from tests.integration.conftest import StartOperator, runs_of, sundial_env
from tests.support import kubelet
from tests.support.kube import Kubectl, cronconfig, wait_until

pytestmark = pytest.mark.k8s

IDLE = "0 0 1 1 *"
"""A schedule that does not fire during a test: runs come from the run-now annotation."""
ENV_NAMES = ("SUNDIAL_RUN_ID", "SUNDIAL_SCHEDULED_FOR", "SUNDIAL_ATTEMPT", "SUNDIAL_CONTEXT")


@pytest.fixture(autouse=True)
def timed(request: pytest.FixtureRequest) -> Iterator[None]:
    began = time.monotonic()
    yield
    print(f"\n[timing] {request.node.name}: {time.monotonic() - began:.1f}s")


def observed(kubectl: Kubectl, name: str, namespace: str) -> None:
    wait_until(lambda: kubectl.status(name, namespace).get("conditions"), what=f"{name} observed")


def run_now(kubectl: Kubectl, name: str, namespace: str, value: str) -> None:
    kubectl.run("annotate", "--overwrite", "cronconfig", name, "-n", namespace, f"sundial.io/run-now={value}")


def uid_of(kubectl: Kubectl, name: str, namespace: str) -> str:
    return str(kubectl.get("cronconfig", name, namespace)["metadata"]["uid"])


def the_run(
    db: str, namespace: str, name: str, *, status: str | None = None, timeout: float = 30
) -> RunRecord:
    """The CronConfig's only started run, once it has ``status`` (or any, if ``None``)."""

    def found() -> RunRecord | None:
        runs = [r for r in runs_of(db, namespace, name) if r.started_at is not None]
        assert len(runs) <= 1, [(r.scheduled_for, r.status) for r in runs]
        return runs[0] if runs and (status is None or runs[0].status == status) else None

    return wait_until(found, timeout=timeout, what=f"the run of {name} ({status or 'any'})")


def ended(db: str, namespace: str, name: str, run_id: Any, *, timeout: float = 30) -> RunRecord:
    """The run once its outcome is recorded."""
    return wait_until(
        lambda: next(
            (
                r
                for r in runs_of(db, namespace, name)
                if r.id == run_id and r.status not in ("Pending", "Running")
            ),
            None,
        ),
        timeout=timeout,
        what=f"run {run_id} to end",
    )


def the_job(kubectl: Kubectl, namespace: str, name: str, *, timeout: float = 30) -> dict[str, Any]:
    """The CronConfig's only Job, once it exists."""

    def found() -> dict[str, Any] | None:
        jobs = kubelet.jobs_of(kubectl, namespace, name)
        assert len(jobs) <= 1, [kubelet.name_of(j) for j in jobs]
        return jobs[0] if jobs else None

    return wait_until(found, timeout=timeout, what=f"the Job of {name}")


def started_template(
    kubectl: Kubectl, db: str, namespace: str, name: str, **spec: Any
) -> tuple[RunRecord, dict[str, Any]]:
    """Apply an idle template CronConfig, trigger it once; (its Running run, its Job)."""
    spec.setdefault("job", kubelet.job_template())
    kubectl.apply(cronconfig(name, namespace, schedule=IDLE, **spec))
    observed(kubectl, name, namespace)
    run_now(kubectl, name, namespace, "1")
    job = the_job(kubectl, namespace, name)
    return the_run(db, namespace, name, status="Running"), job


def test_success_records_the_result_and_the_job_carries_the_run(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    context = {"batch": 7, "who": "tests", "nested": {"a": [1, 2]}}
    run, job = started_template(
        kubectl, db, namespace, "ok", timeoutSeconds=120, context=context, job=kubelet.job_template(init=True)
    )
    name = kubelet.name_of(job)
    meta, spec = job["metadata"], job["spec"]
    assert name.startswith("ok-") and len(name) == len("ok-") + 10, name
    assert meta["labels"]["sundial.io/cronconfig"] == "ok"
    assert meta["labels"]["sundial.io/run-id"] == str(run.id)
    assert meta["labels"]["team"] == "data", "the template's own labels are kept"
    assert meta["annotations"]["owner"] == "tests"
    assert meta["annotations"]["sundial.io/scheduled-for"] == format_timestamp(run.scheduled_for)
    assert meta["annotations"]["sundial.io/attempt"] == str(run.attempt) == "1"
    assert meta["annotations"]["sundial.io/trigger"] == run.trigger == "Manual"
    (owner,) = meta["ownerReferences"]
    assert owner == {
        "apiVersion": "sundial.io/v1alpha1",
        "kind": "CronConfig",
        "name": "ok",
        "uid": uid_of(kubectl, "ok", namespace),
        "controller": True,
    } | {k: v for k, v in owner.items() if k == "blockOwnerDeletion"}
    assert spec["activeDeadlineSeconds"] == 120
    pod_spec = spec["template"]["spec"]
    containers = [*pod_spec["initContainers"], *pod_spec["containers"]]
    assert [c["name"] for c in containers] == ["setup", "main", "sidecar"]
    expected = {
        "SUNDIAL_RUN_ID": str(run.id),
        "SUNDIAL_SCHEDULED_FOR": format_timestamp(run.scheduled_for),
        "SUNDIAL_ATTEMPT": "1",
    }
    for c in containers:
        env = {e["name"]: e.get("value") for e in c.get("env") or ()}
        assert set(ENV_NAMES) <= set(env), (c["name"], env)
        assert {k: env[k] for k in expected} == expected, c["name"]
        assert json.loads(env["SUNDIAL_CONTEXT"]) == context, c["name"]
    main = {e["name"]: e.get("value") for e in containers[1]["env"]}
    assert main["KEEP"] == "me", "the container's own variables are kept"
    # the Pod carries the same, as created by the real Job controller
    pod = kubelet.running_pod(kubectl, namespace, name)
    assert pod["metadata"]["labels"]["sundial.io/run-id"] == str(run.id)

    kubelet.finish(kubectl, namespace, name, 0)
    assert kubelet.wait_ended(kubectl, namespace, name) == ("Complete", "CompletionsReached")
    done = ended(db, namespace, "ok", run.id)
    assert (done.status, done.reason, done.error) == ("Succeeded", None, None), done
    result = done.result
    assert result["job"] == name and result["namespace"] == namespace, result
    assert (result["succeeded"], result["failed"]) == (1, 0), result
    assert result["startTime"] and result["completionTime"], result
    assert result["completionTime"] >= result["startTime"]
    status = wait_until(
        lambda: (s := kubectl.status("ok", namespace)).get("lastRun", {}).get("status") == "Succeeded" and s,
        what="status.lastRun Succeeded",
    )
    assert status["lastRun"]["id"] == str(run.id)
    assert not status.get("active"), status.get("active")
    assert len(kubelet.jobs_of(kubectl, namespace, "ok")) == 1


def test_backoff_limit_exceeded_fails_the_run(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    run, job = started_template(kubectl, db, namespace, "flaky", job=kubelet.job_template(backoff_limit=1))
    name = kubelet.name_of(job)
    first = kubelet.finish(kubectl, namespace, name, 3)
    # the Job controller re-creates the Pod after its 10 s backoff; meanwhile the run goes on
    second = kubelet.running_pod(kubectl, namespace, name, timeout=40)
    assert kubelet.name_of(second) != first
    assert the_run(db, namespace, "flaky").status == "Running", "one failed Pod within backoffLimit"
    kubelet.terminate(kubectl, namespace, second, 3)
    assert kubelet.wait_ended(kubectl, namespace, name) == ("Failed", "BackoffLimitExceeded")
    done = ended(db, namespace, "flaky", run.id)
    assert (done.status, done.reason) == ("Failed", "BackoffLimitExceeded"), done
    assert done.error and name in done.error and "BackoffLimitExceeded" in done.error, done.error
    assert done.result["job"] == name
    assert (done.result["succeeded"], done.result["failed"]) == (0, 2), done.result
    status = wait_until(
        lambda: (s := kubectl.status("flaky", namespace)).get("lastRun", {}).get("status") == "Failed" and s,
        what="status.lastRun Failed",
    )
    assert status.get("lastFailureTime"), status
    assert len(kubelet.jobs_of(kubectl, namespace, "flaky")) == 1, "a failed attempt is not retried"


def test_deadline_times_the_run_out_and_ends_its_job(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    run, job = started_template(kubectl, db, namespace, "slow", timeoutSeconds=5)
    name = kubelet.name_of(job)
    assert job["spec"]["activeDeadlineSeconds"] == 5
    done = ended(db, namespace, "slow", run.id, timeout=30)
    assert done.status == "TimedOut", done
    assert done.duration_ms is not None and 4_000 <= done.duration_ms <= 15_000, done.duration_ms
    assert done.error, done

    def settled() -> list[dict[str, Any]] | None:
        jobs = kubelet.jobs_of(kubectl, namespace, "slow")
        assert [kubelet.name_of(j) for j in jobs] in ([], [name]), "no second Job"
        ended_jobs = [j for j in jobs if kubelet.condition(j) == ("Failed", "DeadlineExceeded")]
        return [] if len(ended_jobs) == len(jobs) and not _live_pods(kubectl, namespace, name) else None

    # the engine's timer deletes the Job, or the Job controller's activeDeadlineSeconds ends it
    wait_until(lambda: settled() is not None, timeout=20, what="the Job gone or DeadlineExceeded")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # nothing starts the slot again
        settled()
        assert len([r for r in runs_of(db, namespace, "slow") if r.started_at]) == 1
        time.sleep(0.5)


def _live_pods(kubectl: Kubectl, namespace: str, job: str) -> list[str]:
    return [
        kubelet.name_of(p)
        for p in kubelet.pods_of(kubectl, namespace, job)
        if p.get("status", {}).get("phase") not in kubelet.TERMINAL
    ]


def test_replace_cancels_the_running_job_and_deletes_it(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig(
            "rep",
            namespace,
            schedule="*/4 * * * * *",
            concurrencyPolicy="Replace",
            job=kubelet.job_template(),
        )
    )
    first = wait_until(
        lambda: next((r for r in runs_of(db, namespace, "rep") if r.status == "Running"), None),
        timeout=20,
        what="a running attempt",
    )
    job = wait_until(
        lambda: next(
            (
                j
                for j in kubelet.jobs_of(kubectl, namespace, "rep")
                if j["metadata"]["labels"]["sundial.io/run-id"] == str(first.id)
            ),
            None,
        ),
        what="its Job",
    )
    old = kubelet.name_of(job)
    assert kubelet.running_pod(kubectl, namespace, old)
    replaced = ended(db, namespace, "rep", first.id, timeout=15)
    assert (replaced.status, replaced.reason) == ("Cancelled", "Replaced"), replaced

    def successor() -> RunRecord | None:
        return next(
            (
                r
                for r in runs_of(db, namespace, "rep")
                if r.scheduled_for > first.scheduled_for and r.started_at is not None
            ),
            None,
        )

    new_run = wait_until(successor, what="the next slot's attempt")
    # the replaced Job is deleted, and the garbage collector deletes its Pods
    wait_until(
        lambda: old not in {kubelet.name_of(j) for j in kubelet.jobs_of(kubectl, namespace, "rep")},
        timeout=15,
        what=f"Job {old} deleted",
    )
    wait_until(
        lambda: not kubelet.pods_of(kubectl, namespace, old), timeout=20, what=f"Pods of {old} deleted"
    )
    new_jobs = [
        j
        for j in kubelet.jobs_of(kubectl, namespace, "rep")
        if j["metadata"]["labels"]["sundial.io/run-id"] == str(new_run.id)
    ]
    assert len(new_jobs) == 1 and kubelet.name_of(new_jobs[0]) != old, new_jobs
    assert new_jobs[0]["metadata"]["annotations"]["sundial.io/scheduled-for"] == format_timestamp(
        new_run.scheduled_for
    )


def test_a_job_deleted_by_someone_else_fails_the_run(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    run, job = started_template(kubectl, db, namespace, "gone")
    name = kubelet.name_of(job)
    kubectl.run("delete", "job", name, "-n", namespace, "--wait=false")
    done = ended(db, namespace, "gone", run.id, timeout=15)
    assert (done.status, done.reason) == ("Failed", "JobDeleted"), done
    assert done.error and name in done.error and "deleted" in done.error, done.error
    time.sleep(1)
    assert not kubelet.jobs_of(kubectl, namespace, "gone"), "no Job is created again"
    assert len(runs_of(db, namespace, "gone")) == 1


def test_history_limits_prune_finished_jobs_but_keep_every_run(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig(
            "hist",
            namespace,
            schedule="*/2 * * * * *",
            concurrencyPolicy="Forbid",
            successfulJobsHistoryLimit=2,
            failedJobsHistoryLimit=1,
            job=kubelet.job_template(),
        )
    )
    outcomes = [0, 3, 0, 3, 0]
    finished: list[tuple[str, int]] = []
    for code in outcomes:
        done = {n for n, _ in finished}

        def next_job(done: set[str] = done) -> str | None:
            live = kubelet.unfinished(kubelet.jobs_of(kubectl, namespace, "hist"))
            assert len(live) <= 1, "Forbid: one Job at a time"
            fresh = [kubelet.name_of(j) for j in live if kubelet.name_of(j) not in done]
            return fresh[0] if fresh else None

        name = wait_until(next_job, timeout=20, what="the next Job")
        kubelet.finish(kubectl, namespace, name, code)
        kubelet.wait_ended(kubectl, namespace, name)
        finished.append((name, code))
    kubectl.run(
        "patch", "cronconfig", "hist", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    succeeded = [n for n, code in finished if code == 0]
    failed = [n for n, code in finished if code != 0]

    def kept() -> tuple[list[str], list[str]] | None:
        jobs = kubelet.jobs_of(kubectl, namespace, "hist")
        ok = sorted(kubelet.name_of(j) for j in jobs if (kubelet.condition(j) or ("",))[0] == "Complete")
        bad = sorted(kubelet.name_of(j) for j in jobs if (kubelet.condition(j) or ("",))[0] == "Failed")
        return (ok, bad) if len(ok) <= 2 and len(bad) <= 1 else None

    ok, bad = wait_until(kept, timeout=30, what="finished Jobs pruned to the limits")
    assert ok == sorted(succeeded[-2:]), "the newest successful Jobs are kept"
    assert bad == failed[-1:], "the newest failed Job is kept"
    runs = {r.result["job"]: r for r in runs_of(db, namespace, "hist") if isinstance(r.result, dict)}
    for name, code in finished:
        assert name in runs, f"the run of pruned Job {name} is kept"
        assert runs[name].status == ("Succeeded" if code == 0 else "Failed"), runs[name]


def test_deleting_the_cronconfig_garbage_collects_its_jobs(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    run, job = started_template(kubectl, db, namespace, "gc")
    done_job = kubelet.name_of(job)
    kubelet.finish(kubectl, namespace, done_job, 0)
    ended(db, namespace, "gc", run.id)
    run_now(kubectl, "gc", namespace, "2")
    second = wait_until(
        lambda: next((r for r in runs_of(db, namespace, "gc") if r.status == "Running"), None),
        what="the second run",
    )
    live = wait_until(
        lambda: kubelet.unfinished(kubelet.jobs_of(kubectl, namespace, "gc")), what="the second Job"
    )
    live_job = kubelet.name_of(live[0])
    assert kubelet.running_pod(kubectl, namespace, live_job)
    kubectl.run("delete", "cronconfig", "gc", "-n", namespace, "--wait=false")
    # the garbage collector follows the ownerReference; the completed Job is not the pruner's
    wait_until(lambda: not kubelet.jobs_of(kubectl, namespace, "gc"), timeout=30, what="Jobs deleted")
    wait_until(lambda: not kubelet.pods_of(kubectl, namespace, live_job), timeout=20, what="Pods deleted")
    lost = ended(db, namespace, "gc", second.id, timeout=15)
    assert (lost.status, lost.reason) == ("Failed", "JobDeleted"), lost
    rows = runs_of(db, namespace, "gc")
    assert {r.id for r in rows} == {run.id, second.id}, "the run history stays"
    assert next(r for r in rows if r.id == run.id).status == "Succeeded"
