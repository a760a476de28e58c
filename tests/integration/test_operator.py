"""The operator end to end: real kube-apiserver, real PostgreSQL and Redis (or SQLite), `sundial run`."""

from __future__ import annotations

import itertools
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sundial.store.records import RunRecord
from sundial.store.store import RunStore
from tests.integration.conftest import Receiver, StartOperator, runs_of, sundial_env
from tests.support.kube import Kubectl, cronconfig, wait_until

pytestmark = pytest.mark.k8s


@pytest.fixture(params=["postgres+redis", "sqlite+local"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    if request.param == "sqlite+local":
        return f"sqlite:///{tmp_path}/runs.db", None
    return request.getfixturevalue("fresh_postgres"), request.getfixturevalue("redis_url")


def test_fires_records_and_shows_status(
    kubectl: Kubectl, namespace: str, backend: tuple[str, str | None], operator_for: StartOperator
) -> None:
    db, redis = backend
    op = operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig(
            "tick",
            namespace,
            schedule="* * * * * *",
            job={"handler": {"name": "sundial.echo"}},
            context={"team": "a"},
        )
    )

    def finished() -> list[RunRecord] | None:
        # slots are claimed (Pending) up to lookahead_seconds before they fire, the newest may still
        # run, and a slot that passed before the operator first read the history runs as CatchUp
        runs = [r for r in runs_of(db, namespace, "tick") if r.trigger == "Schedule" and r.finished_at]
        return runs if len(runs) >= 4 else None

    runs = wait_until(finished, timeout=20, what="4 finished runs")
    assert all(r.status == "Succeeded" for r in runs), [(r.scheduled_for, r.status, r.reason) for r in runs]
    assert all(r.scheduled_for.microsecond == 0 for r in runs), "slots are whole seconds"
    assert runs[1].result == {"context": {"team": "a"}, "attempt": 1}
    assert runs[1].logs and runs[1].logs[0]["message"] == "echo"
    lags = [(r.started_at - r.scheduled_for).total_seconds() for r in runs if r.started_at]
    assert len(lags) == len(runs) and statistics.median(lags) < 0.5 and max(lags) < 3.0, lags
    status = wait_until(lambda: (s := kubectl.status("tick", namespace)).get("lastRun") and s, what="status")
    assert status["lastRun"]["status"] == "Succeeded"
    assert status["observedGeneration"] == 1
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Suspended"]["status"] == "False"
    assert conds["Invalid"]["status"] == "False"
    assert status["nextScheduleTime"] > status["lastScheduleTime"]
    table = kubectl.run("get", "ccfg", "-n", namespace).stdout
    assert table.split("\n")[0].split() == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "LAST",
        "STATUS",
        "LAST",
        "RUN",
        "NEXT",
        "RUN",
        "AGE",
    ]
    assert "Succeeded" in table and "* * * * * *" in table
    metrics = op.metrics()
    for name in (
        "sundial_runs_total",
        "sundial_fire_lag_seconds_bucket",
        "sundial_active_runs",
        "sundial_lease_conflicts_total",
        "sundial_scheduled_cronconfigs",
    ):
        assert name in metrics, name
    assert 'sundial_runs_total{status="Succeeded",trigger="Schedule"}' in metrics


def test_forbid_never_overlaps_and_records_skips(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig(
            "slow",
            namespace,
            schedule="* * * * * *",
            concurrencyPolicy="Forbid",
            context={"sleepSeconds": 2.5},
            job={"handler": {"name": "sundial.echo"}},
        )
    )
    wait_until(
        lambda: sum(r.status == "Succeeded" for r in runs_of(db, namespace, "slow")) >= 2,
        timeout=30,
        what="two slow runs",
    )
    runs = runs_of(db, namespace, "slow")
    executed = sorted((r for r in runs if r.status == "Succeeded"), key=lambda r: r.scheduled_for)
    for a, b in itertools.pairwise(executed):
        assert a.finished_at is not None and b.started_at is not None
        assert b.started_at >= a.finished_at, "Forbid must never overlap attempts"
    skipped = [r for r in runs if r.status == "Skipped"]
    assert skipped and {r.reason for r in skipped} == {"ConcurrencyForbid"}


def test_replace_cancels_the_running_attempt(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    # the attempts sleep 30 s: do not wait for them when the operator stops
    operator_for(sundial_env(db, redis, namespace, SUNDIAL_SHUTDOWN_GRACE_SECONDS="1"))
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
    wait_until(
        lambda: any(r.status == "Cancelled" for r in runs_of(db, namespace, "rep")),
        timeout=20,
        what="a cancelled run",
    )
    runs = runs_of(db, namespace, "rep")
    first = min((r for r in runs if r.status == "Cancelled"), key=lambda r: r.scheduled_for)
    assert first.reason == "Replaced"
    # the attempt that replaced it started (it is not a Pending row claimed ahead of its slot)
    successor = min((r for r in runs if r.scheduled_for > first.scheduled_for), key=lambda r: r.scheduled_for)
    assert successor.status in ("Running", "Cancelled") and successor.started_at is not None, successor


def test_allow_overlaps(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig(
            "par",
            namespace,
            schedule="* * * * * *",
            concurrencyPolicy="Allow",
            context={"sleepSeconds": 2.5},
            job={"handler": {"name": "sundial.echo"}},
        )
    )
    wait_until(
        lambda: sum(r.status == "Succeeded" for r in runs_of(db, namespace, "par")) >= 3,
        timeout=30,
        what="three runs",
    )
    done = sorted(
        (r for r in runs_of(db, namespace, "par") if r.status == "Succeeded"), key=lambda r: r.scheduled_for
    )
    assert all(r.started_at and r.finished_at for r in done)
    assert any(
        b.started_at and a.finished_at and b.started_at < a.finished_at for a, b in itertools.pairwise(done)
    ), "Allow overlaps"
    assert not any(r.status == "Skipped" for r in runs_of(db, namespace, "par"))


def test_retries_then_success(
    kubectl: Kubectl, namespace: str, backend: tuple[str, str | None], operator_for: StartOperator
) -> None:
    db, redis = backend
    operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig(
            "flaky",
            namespace,
            schedule="0 0 1 1 *",
            job={"handler": {"name": "sundial.echo"}},
            context={"failAttempts": 2},
            retry={"limit": 3, "backoffSeconds": 1, "maxBackoffSeconds": 2},
        )
    )
    observed(kubectl, "flaky", namespace)
    subprocess_trigger(kubectl, namespace, "flaky")
    wait_until(
        lambda: any(r.status == "Succeeded" for r in runs_of(db, namespace, "flaky")),
        timeout=30,
        what="success after retries",
    )
    runs = sorted(runs_of(db, namespace, "flaky"), key=lambda r: r.attempt)
    assert [(r.attempt, r.status, r.trigger) for r in runs] == [
        (1, "Failed", "Manual"),
        (2, "Failed", "Retry"),
        (3, "Succeeded", "Retry"),
    ]
    assert len({r.scheduled_for for r in runs}) == 1, "retries belong to the same slot"
    assert seconds_between(runs[0].finished_at, runs[1].started_at) >= 0.9
    assert seconds_between(runs[1].finished_at, runs[2].started_at) >= 1.9
    events = [e for e in kubectl.events(namespace) if e["reason"] == "RunFailed"]
    assert events and "asked to fail" in events[0]["message"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["killed, another replica", "stopped, same replica restarted"])
def test_a_recorded_retry_survives_its_replica(
    how: str, kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    """A retry is a Pending row from the moment it is decided: it runs after a crash or restart,
    with its backoff kept, exactly once."""
    db, redis = pg_redis
    a = operator_for(sundial_env(db, redis, namespace), replica="replica-a")
    kubectl.apply(
        cronconfig(
            "flaky",
            namespace,
            schedule="0 0 1 1 *",
            job={"handler": {"name": "sundial.echo"}},
            context={"failAttempts": 1},
            retry={"limit": 2, "backoffSeconds": 8, "maxBackoffSeconds": 8},
        )
    )
    observed(kubectl, "flaky", namespace)
    subprocess_trigger(kubectl, namespace, "flaky")
    wait_until(
        lambda: any(r.attempt == 2 and r.status == "Pending" for r in runs_of(db, namespace, "flaky")),
        what="the retry recorded while its backoff runs",
    )
    if how.startswith("killed"):
        a.kill()
        successor = "replica-b"
    else:
        assert a.stop() == 0
        successor = "replica-a"
    operator_for(sundial_env(db, redis, namespace), replica=successor)
    wait_until(
        lambda: any(r.status == "Succeeded" for r in runs_of(db, namespace, "flaky")),
        timeout=40,
        what="the retry ran after its replica went away",
    )
    time.sleep(2)
    runs = sorted(runs_of(db, namespace, "flaky"), key=lambda r: r.attempt)
    assert [(r.attempt, r.status, r.trigger) for r in runs] == [
        (1, "Failed", "Manual"),
        (2, "Succeeded", "Retry"),
    ]
    assert runs[1].replica == successor
    assert runs[1].started_at is not None and runs[0].finished_at is not None
    assert (runs[1].started_at - runs[0].finished_at).total_seconds() >= 7.5, "the backoff is kept"


def seconds_between(earlier: datetime | None, later: datetime | None) -> float:
    assert earlier is not None and later is not None
    return (later - earlier).total_seconds()


def observed(kubectl: Kubectl, name: str, namespace: str) -> None:
    """Wait until the operator has seen the CronConfig (its status has conditions)."""
    wait_until(lambda: kubectl.status(name, namespace).get("conditions"), what=f"{name} observed")


def subprocess_trigger(kubectl: Kubectl, namespace: str, name: str) -> None:
    import subprocess
    import sys

    sundial = Path(sys.executable).parent / "sundial"
    env = {"KUBECONFIG": kubectl.kubeconfig, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [str(sundial), "trigger", name, "-n", namespace], env=env, capture_output=True, text=True, check=True
    )
    assert "sundial.io/run-now=" in out.stdout


def test_timeout_marks_attempt_timed_out(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig(
            "slowpoke",
            namespace,
            schedule="*/3 * * * * *",
            timeoutSeconds=1,
            context={"sleepSeconds": 10},
            job={"handler": {"name": "sundial.echo"}},
        )
    )
    run = wait_until(
        lambda: next((r for r in runs_of(db, namespace, "slowpoke") if r.status == "TimedOut"), None),
        timeout=20,
        what="a timed-out run",
    )
    assert run.duration_ms is not None and 900 <= run.duration_ms < 3000
    assert "timeoutSeconds=1" in (run.error or "")
    wait_until(lambda: any(e["reason"] == "RunTimedOut" for e in kubectl.events(namespace)), what="event")
    status = wait_until(lambda: (s := kubectl.status("slowpoke", namespace)).get("lastFailureTime") and s)
    assert status["lastRun"]["status"] == "TimedOut"


def test_dry_run_records_without_executing(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig(
            "dry", namespace, schedule="* * * * * *", dryRun=True, job={"handler": {"name": "sundial.echo"}}
        )
    )
    # the newest slot may still be Pending: claimed ahead of its fire time
    wait_until(
        lambda: len([r for r in runs_of(db, namespace, "dry") if r.status != "Pending"]) >= 2, what="dry runs"
    )
    fired = [r for r in runs_of(db, namespace, "dry") if r.status != "Pending"]
    for r in fired:
        assert r.status == "Succeeded" and r.dry_run and r.result is None and not r.logs
        assert r.started_at is not None and r.finished_at is not None


def test_suspend_spec_change_and_delete(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    obj = cronconfig(
        "sus", namespace, schedule="* * * * * *", suspend=True, job={"handler": {"name": "sundial.noop"}}
    )
    kubectl.apply(obj)
    status = wait_until(
        lambda: (s := kubectl.status("sus", namespace)).get("conditions") and s, what="status"
    )
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Suspended"]["status"] == "True" and conds["Ready"]["reason"] == "Suspended"
    assert "nextScheduleTime" not in status
    time.sleep(2.5)
    assert runs_of(db, namespace, "sus") == []
    # a yearly schedule, then every second: the change reschedules at once
    obj["spec"].update(suspend=False, schedule="0 0 1 1 *")
    kubectl.apply(obj)
    wait_until(
        lambda: (
            kubectl.status("sus", namespace)
            .get("nextScheduleTime", "")
            .startswith(f"{datetime.now(UTC).year + 1}-01-01")
        ),
        what="yearly next run",
    )
    changed = time.time()
    obj["spec"]["schedule"] = "* * * * * *"
    kubectl.apply(obj)
    first = wait_until(lambda: runs_of(db, namespace, "sus"), timeout=10, what="first run after change")
    # the next whole second after the change, give or take a loaded machine (not next year's slot)
    assert first[-1].scheduled_for.timestamp() - changed < 4.0
    assert first[-1].generation == 3
    uid = first[0].config_uid
    kubectl.run("delete", "cronconfig", "sus", "-n", namespace)

    def deleted() -> bool:
        with RunStore(db) as store:
            config = store.get_config(uid)
            return config is not None and config.deleted_at is not None

    wait_until(deleted, what="the deletion recorded")
    time.sleep(2)  # claims already in flight (at most a lookahead ahead) may still land
    count = len(runs_of(db, namespace, "sus"))
    time.sleep(2.5)
    assert len(runs_of(db, namespace, "sus")) == count, "deletion stops firing"
    with RunStore(db) as store:
        assert [v.generation for v in store.versions(uid)] == [1, 2, 3]


def test_run_at_one_shot_completes(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    kubectl.apply(
        cronconfig(
            "once",
            namespace,
            runAt=at.isoformat().replace("+00:00", "Z"),
            job={"handler": {"name": "sundial.echo"}},
        )
    )
    status = wait_until(lambda: (s := kubectl.status("once", namespace)).get("lastRun") and s, timeout=20)
    # the status and the history are written in batches of their own: either may come first
    wait_until(lambda: [r.status for r in runs_of(db, namespace, "once")] == ["Succeeded"], timeout=10)
    runs = runs_of(db, namespace, "once")
    assert len(runs) == 1 and runs[0].scheduled_for == at and runs[0].status == "Succeeded"

    def completed() -> dict[str, Any] | None:
        s = kubectl.status("once", namespace)
        return s if "nextScheduleTime" not in s else None

    status = wait_until(completed, what="nextScheduleTime removed")
    assert {c["type"]: c for c in status["conditions"]}["Ready"]["reason"] == "Completed"
    time.sleep(2)
    assert len(runs_of(db, namespace, "once")) == 1


def test_http_job_with_secret_header_is_redacted(
    kubectl: Kubectl,
    namespace: str,
    pg_redis: tuple[str, str],
    operator_for: StartOperator,
    receiver: Receiver,
) -> None:
    db, redis = pg_redis
    kubectl.run(
        "create", "secret", "generic", "hook-token", "-n", namespace, "--from-literal=token=s3cr3t-value"
    )
    operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig(
            "hook",
            namespace,
            schedule="* * * * * *",
            job={
                "http": {
                    "url": receiver.url,
                    "method": "POST",
                    "body": {"report": "daily"},
                    "headers": {"X-Team": "a"},
                    "headersFrom": [
                        {"name": "Authorization", "secretKeyRef": {"name": "hook-token", "key": "token"}}
                    ],
                }
            },
        )
    )
    wait_until(lambda: len(receiver.requests) >= 2, what="two requests")
    req = receiver.requests[0]
    assert (
        req["method"] == "POST"
        and req["authorization"] == "s3cr3t-value"
        and '"report": "daily"' in req["body"]
    )
    run = wait_until(
        lambda: next((r for r in runs_of(db, namespace, "hook") if r.status == "Succeeded"), None)
    )
    assert run.result["statusCode"] == 200 and run.result["body"] == '{"ok": true}'
    receiver.status = 500
    failed = wait_until(
        lambda: next((r for r in runs_of(db, namespace, "hook") if r.status == "Failed"), None)
    )
    assert "HTTP 500" in (failed.error or "")
    everything = repr(runs_of(db, namespace, "hook")) + repr(kubectl.get("cronconfig", "hook", namespace))
    everything += repr(kubectl.events(namespace))
    assert "s3cr3t-value" not in everything


def test_run_now_fires_once_per_value_across_restarts(
    kubectl: Kubectl, namespace: str, backend: tuple[str, str | None], operator_for: StartOperator
) -> None:
    db, redis = backend
    op = operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig("manual", namespace, schedule="0 0 1 1 *", job={"handler": {"name": "sundial.echo"}})
    )
    observed(kubectl, "manual", namespace)
    kubectl.run("annotate", "cronconfig", "manual", "-n", namespace, "sundial.io/run-now=first")
    wait_until(lambda: len(runs_of(db, namespace, "manual")) == 1, what="manual run")
    assert op.stop() == 0
    op = operator_for(sundial_env(db, redis, namespace))
    # the restarted operator has read the history (where a pending run-now fires) and scheduled it
    wait_until(lambda: "sundial_scheduled_cronconfigs 1.0" in op.metrics(), what="scheduled again")
    time.sleep(2)
    assert len(runs_of(db, namespace, "manual")) == 1, (
        "the same value never fires twice, even after a restart"
    )
    kubectl.run(
        "annotate", "--overwrite", "cronconfig", "manual", "-n", namespace, "sundial.io/run-now=second"
    )
    wait_until(lambda: len(runs_of(db, namespace, "manual")) == 2, what="second manual run")
    assert {r.trigger for r in runs_of(db, namespace, "manual")} == {"Manual"}


@pytest.mark.slow
def test_missed_slots_after_a_minute_of_downtime(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    op = operator_for(sundial_env(db, redis, namespace))
    for policy in ("Skip", "RunOnce", "RunAll"):
        kubectl.apply(
            cronconfig(
                policy.lower(),
                namespace,
                schedule="*/5 * * * * *",
                missedRunPolicy=policy,
                startingDeadlineSeconds=3600,
                job={"handler": {"name": "sundial.noop"}},
            )
        )
    for policy in ("skip", "runonce", "runall"):
        wait_until(lambda p=policy: runs_of(db, namespace, p), timeout=15, what=f"{policy} first run")  # type: ignore[misc]
    assert op.stop() == 0, op.logs()[-3000:]
    stopped = datetime.now(UTC)
    time.sleep(60)
    restarted = datetime.now(UTC)
    operator_for(sundial_env(db, redis, namespace))
    names = ("skip", "runonce", "runall")

    def after_stop(name: str) -> list[RunRecord]:
        return sorted(
            (r for r in runs_of(db, namespace, name) if r.scheduled_for > stopped),
            key=lambda r: r.scheduled_for,
        )

    def settled() -> bool:
        for name in names:
            rows = after_stop(name)
            if not any(r.trigger == "Schedule" for r in rows):
                return False
            if any(r.trigger == "CatchUp" and r.status in ("Pending", "Running") for r in rows):
                return False
        return True

    wait_until(settled, timeout=30, what="catch-up done and regular firing resumed")
    windows: dict[str, list[RunRecord]] = {}
    for name in names:
        rows = after_stop(name)
        resumed = min(r.scheduled_for for r in rows if r.trigger == "Schedule")
        # every slot from the stop until regular firing resumed is in the history, none twice
        expected = [
            s
            for s in (stopped.replace(microsecond=0) + timedelta(seconds=i) for i in range(1, 90))
            if s.second % 5 == 0 and stopped < s < resumed
        ]
        # 60 s of downtime plus the restart: 12 slots and a few, however slowly the operator starts
        assert 11 <= len(expected) <= 20 and expected[-1] >= restarted - timedelta(seconds=5)
        caught = [r for r in rows if r.scheduled_for < resumed]
        assert [r.scheduled_for for r in caught] == expected, name
        assert {r.trigger for r in caught} == {"CatchUp"}
        windows[name] = caught
    skip, once, every = windows["skip"], windows["runonce"], windows["runall"]
    assert {(r.status, r.reason) for r in skip} == {("Skipped", "Missed")}
    assert [r.status for r in once[-1:]] == ["Succeeded"], [(r.status, r.reason) for r in once]
    assert {(r.status, r.reason) for r in once[:-1]} == {("Skipped", "Missed")}
    assert {r.status for r in every} == {"Succeeded"}, [(r.status, r.reason) for r in every]
    assert any(e["reason"] == "MissedRuns" for e in kubectl.events(namespace))


@pytest.mark.slow
def test_two_replicas_run_each_slot_exactly_once(
    kubectl: Kubectl,
    namespace: str,
    pg_redis: tuple[str, str],
    operator_for: StartOperator,
    receiver: Receiver,
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace), replica="replica-a")
    operator_for(sundial_env(db, redis, namespace), replica="replica-b")
    kubectl.apply(
        cronconfig(
            "both",
            namespace,
            schedule="* * * * * *",
            concurrencyPolicy="Allow",
            job={"http": {"url": receiver.url, "method": "POST"}},
        )
    )
    wait_until(lambda: len(set(receiver.slots())) >= 18, timeout=45, what="18 slots executed")
    time.sleep(2)  # a duplicate execution of the last slots would arrive by now
    counts = Counter(receiver.slots())
    assert not [s for s, n in counts.items() if n > 1], f"duplicate executions: {counts.most_common(3)}"
    seen = sorted(datetime.fromisoformat(s) for s in counts)
    gaps = [b for a, b in itertools.pairwise(seen) if (b - a).total_seconds() != 1]
    assert not gaps, f"gaps before {gaps}"
    runs = runs_of(db, namespace, "both")
    assert len({(r.scheduled_for, r.attempt) for r in runs}) == len(runs)
    assert {r.replica for r in runs} <= {"replica-a", "replica-b"}


@pytest.mark.slow
def test_a_killed_replicas_claimed_slots_are_run_by_the_other(
    kubectl: Kubectl,
    namespace: str,
    pg_redis: tuple[str, str],
    operator_for: StartOperator,
    receiver: Receiver,
) -> None:
    """SIGKILL while holding slots claimed ahead: the survivor adopts them, late but exactly once."""
    db, redis = pg_redis
    replicas = {
        name: operator_for(sundial_env(db, redis, namespace), replica=name)
        for name in ("replica-a", "replica-b")
    }
    kubectl.apply(
        cronconfig(
            "survive",
            namespace,
            schedule="* * * * * *",
            concurrencyPolicy="Allow",
            job={"http": {"url": receiver.url, "method": "POST"}},
        )
    )
    wait_until(lambda: len(runs_of(db, namespace, "survive")) >= 3, timeout=30, what="slots claimed")
    time.sleep(2)
    # the replica that claims this CronConfig's slots (its preferred one) is the one to kill
    victim = max(runs_of(db, namespace, "survive"), key=lambda r: r.scheduled_for).replica
    assert victim in replicas
    replicas[victim].kill()
    killed = datetime.now(UTC)
    # heartbeat TTL 3 s + reaper period, then more slots
    wait_until(
        lambda: any(datetime.fromisoformat(s) > killed + timedelta(seconds=9) for s in receiver.slots()),
        timeout=30,
        what="slots executed well after the kill",
    )
    time.sleep(1)
    counts = Counter(receiver.slots())
    assert not [s for s, n in counts.items() if n > 1], f"duplicate executions: {counts.most_common(3)}"
    seen = sorted(datetime.fromisoformat(s) for s in counts)
    gaps = [b for a_, b in itertools.pairwise(seen) if (b - a_).total_seconds() != 1]
    assert not gaps, f"slots never executed before {gaps}"
    assert seen[-1] > killed + timedelta(seconds=8)
    runs = runs_of(db, namespace, "survive")
    around = [
        r for r in runs if killed - timedelta(seconds=2) <= r.scheduled_for <= killed + timedelta(seconds=2)
    ]
    assert around and all(r.status == "Succeeded" for r in around), [(r.status, r.reason) for r in around]
    survivor = ({"replica-a", "replica-b"} - {victim}).pop()
    assert {r.replica for r in runs if r.scheduled_for > killed + timedelta(seconds=5)} == {survivor}


def test_status_patches_are_coalesced(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    op = operator_for(sundial_env(db, redis, namespace, SUNDIAL_STATUS_QPS="4"))
    for i in range(8):
        kubectl.apply(
            cronconfig(f"c{i}", namespace, schedule="* * * * * *", job={"handler": {"name": "sundial.noop"}})
        )
    wait_until(lambda: all(runs_of(db, namespace, f"c{i}") for i in range(8)), what="all 8 firing")
    before = _patches(op.metrics())
    t0 = time.monotonic()
    since = datetime.now(UTC)

    def slots_since(i: int) -> list[datetime]:
        rows = runs_of(db, namespace, f"c{i}")
        return sorted(r.scheduled_for for r in rows if r.scheduled_for > since and r.status == "Succeeded")

    # 8 CronConfigs firing every second want far more than 4 patches/s: status must lag, history not
    wait_until(lambda: all(len(slots_since(i)) >= 8 for i in range(8)), timeout=30, what="8 runs each")
    patches = _patches(op.metrics()) - before
    elapsed = time.monotonic() - t0
    for i in range(8):
        slots = slots_since(i)
        gaps = [b for a, b in itertools.pairwise(slots) if (b - a).total_seconds() != 1]
        assert not gaps, f"c{i}: slots missing from the history before {gaps}"
    assert patches <= 4 * elapsed + 8, f"{patches} patches in {elapsed:.1f}s exceed the 4/s budget"
    wait_until(
        lambda: all(kubectl.status(f"c{i}", namespace).get("lastRun") for i in range(8)), what="status"
    )


def _patches(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('sundial_status_patches_total{result="ok"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.slow
def test_sigterm_finishes_running_attempts_and_dead_replica_is_taken_over(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    db, redis = pg_redis
    a = operator_for(sundial_env(db, redis, namespace), replica="replica-a")
    kubectl.apply(
        cronconfig(
            "long",
            namespace,
            schedule="0 0 1 1 *",
            context={"sleepSeconds": 2},
            job={"handler": {"name": "sundial.echo"}},
        )
    )
    observed(kubectl, "long", namespace)
    kubectl.run("annotate", "cronconfig", "long", "-n", namespace, "sundial.io/run-now=graceful")
    wait_until(lambda: runs_of(db, namespace, "long"), what="running")
    assert a.stop() == 0
    graceful = runs_of(db, namespace, "long")[0]
    assert graceful.status == "Succeeded", "SIGTERM lets the running attempt finish"
    # now a crash: replica a is killed mid-run and replica b takes the run over
    a = operator_for(sundial_env(db, redis, namespace), replica="replica-a")
    b = operator_for(sundial_env(db, redis, namespace), replica="replica-b")
    kubectl.apply(
        cronconfig(
            "long",
            namespace,
            schedule="0 0 1 1 *",
            context={"sleepSeconds": 60},
            job={"handler": {"name": "sundial.echo"}},
        )
    )
    time.sleep(1)
    kubectl.run("annotate", "--overwrite", "cronconfig", "long", "-n", namespace, "sundial.io/run-now=crash")
    running = wait_until(
        lambda: next((r for r in runs_of(db, namespace, "long") if r.status == "Running"), None)
    )
    victim = a if running.replica == "replica-a" else b
    victim.kill()
    lost = wait_until(
        lambda: next(
            (r for r in runs_of(db, namespace, "long") if r.id == running.id and r.status != "Running"), None
        ),
        timeout=30,
    )
    assert lost.status == "Failed" and lost.reason == "OwnerLost"
