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
