"""Fan-out end to end: real operator replicas, the real API server, PostgreSQL and Redis, and an item
endpoint in its own process that counts what it saw (``tests/support/item_receiver.py``).

- 10,000 items over three replicas: every item succeeded exactly once at the endpoint and in the
  history, the endpoint never had more than ``parallelism`` requests in flight, every replica
  worked, and ``status.active`` showed the counts while it ran.
- A poisoned item is dead-lettered while the others succeed; ``sundial deadletters`` lists it,
  ``sundial requeue`` sends it back under the same run, which then succeeds.
- The coordinating replica is SIGKILLed mid-run: another resumes the run, no item is lost, and no
  item has two successes in the history.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sundial.models.base import format_timestamp
from sundial.models.runs import ItemStatus
from sundial.store.items import RunItems
from sundial.store.records import RunRecord
from sundial.store.store import RunStore
from tests.integration.conftest import StartOperator, runs_of, sundial_env
from tests.support.kube import Kubectl, cronconfig, wait_until
from tests.support.operator import OPERATOR_HANDLERS, OperatorProcess
from tests.support.services import ROOT, free_port

pytestmark = pytest.mark.k8s

HANDLERS = f"{OPERATOR_HANDLERS},tests.handlers_fixture"
SUNDIAL = Path(sys.executable).parent / "sundial"


class ItemEndpoint:
    def __init__(self, url: str) -> None:
        self.url = url

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=10) as r:
            return dict(json.loads(r.read()))

    def poison(self, keys: list[str]) -> None:
        req = urllib.request.Request(f"{self.url}/poison", data=json.dumps(keys).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[ItemEndpoint]:
    port = free_port()
    log = (tmp_path / "item-receiver.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.item_receiver", str(port)], cwd=ROOT, stdout=log, stderr=log
    )
    ep = ItemEndpoint(f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: _up(ep), timeout=20, what="the item receiver")
        yield ep
    finally:
        proc.terminate()
        proc.wait(10)


def _up(ep: ItemEndpoint) -> bool:
    try:
        ep.stats()
    except OSError:
        return False
    return True


def fanout(
    name: str, namespace: str, endpoint: ItemEndpoint, count: int, *, parallelism: int, ms: int, **spec: Any
) -> dict[str, Any]:
    """A one-shot fan-out CronConfig firing in two seconds: ``count`` items, each a POST to the endpoint."""
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    return cronconfig(
        name,
        namespace,
        runAt=format_timestamp(when),
        timeoutSeconds=900,
        context={"count": count, "ms": ms},
        job={
            "fanout": {
                "source": {"handler": {"name": "tests.fanout_items"}},
                "each": {"http": {"url": endpoint.url + "/item/{{ item.id }}?ms={{ context.ms }}"}},
                "parallelism": parallelism,
                **spec,
            }
        },
    )


def the_run(db: str, namespace: str, name: str) -> RunRecord | None:
    runs = runs_of(db, namespace, name)
    return runs[0] if runs else None


def finished(db: str, namespace: str, name: str) -> RunRecord | None:
    run = the_run(db, namespace, name)
    return run if run is not None and run.finished_at is not None else None


def item_counts(db: str, run_id: uuid.UUID) -> dict[ItemStatus, int]:
    with RunStore(db) as store:
        return RunItems(store.engine).counts(run_id)


def succeeded_by(op: OperatorProcess) -> float:
    for line in op.metrics().splitlines():
        if line.startswith('sundial_fanout_items_total{status="Succeeded"}'):
            return float(line.split()[-1])
    return 0.0


def sundial_cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SUNDIAL), *args, "--database-url", db], capture_output=True, text=True, check=True, timeout=60
    )


def test_ten_thousand_items_over_three_replicas_each_succeed_once(
    kubectl: Kubectl,
    namespace: str,
    pg_redis: tuple[str, str],
    operator_for: StartOperator,
    endpoint: ItemEndpoint,
) -> None:
    db, redis = pg_redis
    env = sundial_env(db, redis, namespace, SUNDIAL_HANDLERS=HANDLERS, SUNDIAL_FANOUT_WORKERS="40")
    ops = [operator_for(env, replica=f"replica-{c}") for c in "abc"]
    kubectl.apply(fanout("digest", namespace, endpoint, 10_000, parallelism=50, ms=3))
    shown: list[dict[str, Any]] = []

    def progress() -> RunRecord | None:
        active = kubectl.status("digest", namespace).get("active") or []
        shown.extend(a["items"] for a in active if a.get("items"))
        return finished(db, namespace, "digest")

    run = wait_until(progress, timeout=300, interval=0.5, what="the fan-out run to finish")
    stats = endpoint.stats()
    assert run.status == "Succeeded", f"{run.status}: {run.error}"
    assert run.result["items"] == {
        "total": 10_000,
        "succeeded": 10_000,
        "failed": 0,
        "deadLettered": 0,
        "pending": 0,
        "running": 0,
    }
    keys = {f"k{i}" for i in range(10_000)}
    assert set(stats["ok"]) == keys, f"{len(keys - set(stats['ok']))} items never reached the endpoint"
    twice = {k: n for k, n in stats["calls"].items() if n != 1}
    assert not twice, f"items called more than once: {dict(list(twice.items())[:10])}"
    assert stats["peak"] <= 50, f"the endpoint had {stats['peak']} requests in flight; parallelism is 50"
    assert stats["missingItemHeader"] == 0
    assert item_counts(db, run.id)[ItemStatus.SUCCEEDED] == 10_000
    per_replica = [succeeded_by(op) for op in ops]
    assert sum(per_replica) == 10_000 and all(n > 0 for n in per_replica), per_replica
    took = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else 0
    print(f"10,000 items in {took:.1f}s; per replica {per_replica}; peak in flight {stats['peak']}")
    assert shown and any(0 < s["succeeded"] < 10_000 for s in shown), "status.active never showed progress"
    out = sundial_cli(db, "runs", "digest", "-n", namespace).stdout
    assert "10000/10000" in out, out
    for op in ops:
        assert "Traceback" not in op.logs(), op.logs()[-3000:]


def test_a_poisoned_item_is_dead_lettered_then_requeued_under_the_same_run(
    kubectl: Kubectl,
    namespace: str,
    pg_redis: tuple[str, str],
    operator_for: StartOperator,
    endpoint: ItemEndpoint,
) -> None:
    db, redis = pg_redis
    env = sundial_env(db, redis, namespace, SUNDIAL_HANDLERS=HANDLERS)
    operator_for(env, replica="replica-a")
    operator_for(env, replica="replica-b")
    endpoint.poison(["k7"])
    kubectl.apply(
        fanout(
            "charge",
            namespace,
            endpoint,
            300,
            parallelism=10,
            ms=1,
            itemRetry={"limit": 2, "backoffSeconds": 1},
        )
    )
    run = wait_until(lambda: finished(db, namespace, "charge"), timeout=120, what="the run to fail")
    assert run.status == "Failed"
    assert run.error is not None and "299 of 300 items succeeded, 1 dead-lettered" in run.error
    assert endpoint.stats()["calls"]["k7"] == 3  # the first attempt and two retries
    listed = json.loads(sundial_cli(db, "deadletters", "charge", "-n", namespace, "-o", "json").stdout)
    assert [(d["itemKey"], d["attempts"], d["runId"]) for d in listed] == [("k7", 3, str(run.id))]
    assert "HTTP 500" in listed[0]["error"] and listed[0]["item"] == {"id": "k7", "n": 7}
    table = sundial_cli(db, "deadletters", "charge", "-n", namespace).stdout
    assert "k7" in table and "HTTP 500" in table

    endpoint.poison([])
    out = sundial_cli(db, "requeue", "charge", "-n", namespace).stdout
    assert f"run {run.id}: 1 item requeued" in out

    def again() -> RunRecord | None:
        latest = the_run(db, namespace, "charge")
        return latest if latest is not None and latest.status == "Succeeded" else None

    done = wait_until(again, timeout=60, what="the requeued run to succeed")
    assert done.id == run.id and done.attempt == 1, "the requeue ran under the same run"
    assert done.result["items"]["succeeded"] == 300
    stats = endpoint.stats()
    assert stats["ok"]["k7"] == 1 and stats["calls"]["k7"] == 4
    assert max(stats["ok"].values()) == 1 and len(stats["ok"]) == 300
    assert "no dead-lettered items" in sundial_cli(db, "deadletters", "charge", "-n", namespace).stdout
    assert len(runs_of(db, namespace, "charge")) == 1


def test_the_coordinating_replica_killed_mid_run_loses_no_item(
    kubectl: Kubectl,
    namespace: str,
    pg_redis: tuple[str, str],
    operator_for: StartOperator,
    endpoint: ItemEndpoint,
) -> None:
    db, redis = pg_redis
    env = sundial_env(db, redis, namespace, SUNDIAL_HANDLERS=HANDLERS, SUNDIAL_FANOUT_WORKERS="20")
    ops = {name: operator_for(env, replica=name) for name in ("replica-a", "replica-b", "replica-c")}
    kubectl.apply(fanout("sync", namespace, endpoint, 3000, parallelism=30, ms=20))

    def midway() -> RunRecord | None:
        run = the_run(db, namespace, "sync")
        if run is None or run.status != "Running":
            return None
        return run if item_counts(db, run.id)[ItemStatus.SUCCEEDED] >= 800 else None

    run = wait_until(midway, timeout=120, interval=0.1, what="the run a quarter done")
    assert run.replica in ops
    killed_at = time.monotonic()
    ops[run.replica].kill()
    done = wait_until(lambda: finished(db, namespace, "sync"), timeout=180, what="the run to finish")
    took = time.monotonic() - killed_at
    assert done.status == "Succeeded", f"{done.status} {done.reason}: {done.error}"
    assert done.id == run.id and done.replica != run.replica, "another replica resumed the same run"
    assert item_counts(db, run.id)[ItemStatus.SUCCEEDED] == 3000
    assert done.result["items"]["succeeded"] == 3000
    stats = endpoint.stats()
    assert set(stats["ok"]) == {f"k{i}" for i in range(3000)}, "an item was lost"
    again = {k: n for k, n in stats["calls"].items() if n > 1}
    # only items in the killed replica's hands may run again: at most its share of parallelism
    assert len(again) <= 30, f"{len(again)} items ran twice"
    assert stats["peak"] <= 30
    print(f"resumed and finished {took:.1f}s after the kill; {len(again)} items ran again")


def test_a_restarted_replica_resumes_its_run_and_no_item_runs_twice(
    kubectl: Kubectl,
    namespace: str,
    pg_redis: tuple[str, str],
    operator_for: StartOperator,
    endpoint: ItemEndpoint,
) -> None:
    """SIGTERM mid-run: items in hand finish within the grace period (or were never started), the
    run stays Running, and the restarted replica resumes it: never an item both finished and
    redelivered."""
    db, redis = pg_redis
    env = sundial_env(db, redis, namespace, SUNDIAL_HANDLERS=HANDLERS, SUNDIAL_SHUTDOWN_GRACE_SECONDS="10")
    first = operator_for(env, replica="replica-a")
    kubectl.apply(fanout("nightly", namespace, endpoint, 1500, parallelism=10, ms=10))

    def midway() -> RunRecord | None:
        run = the_run(db, namespace, "nightly")
        if run is None or run.status != "Running":
            return None
        return run if item_counts(db, run.id)[ItemStatus.SUCCEEDED] >= 300 else None

    run = wait_until(midway, timeout=120, interval=0.1, what="the run a fifth done")
    assert first.stop() == 0
    assert "Traceback" not in first.logs()
    stopped = the_run(db, namespace, "nightly")
    assert stopped is not None and stopped.status == "Running", "a detached fan-out run stays Running"
    assert item_counts(db, run.id)[ItemStatus.RUNNING] == 0, "an item was left Running at shutdown"
    operator_for(env, replica="replica-a")
    done = wait_until(lambda: finished(db, namespace, "nightly"), timeout=120, what="the resumed run")
    assert done.status == "Succeeded" and done.id == run.id, f"{done.status}: {done.error}"
    stats = endpoint.stats()
    assert set(stats["ok"]) == {f"k{i}" for i in range(1500)}
    assert max(stats["calls"].values()) == 1, "an item finished before the shutdown ran again"


def test_a_timed_out_run_hands_out_no_more_items(
    kubectl: Kubectl,
    namespace: str,
    pg_redis: tuple[str, str],
    operator_for: StartOperator,
    endpoint: ItemEndpoint,
) -> None:
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace, SUNDIAL_HANDLERS=HANDLERS), replica="replica-a")
    config = fanout("slow", namespace, endpoint, 5000, parallelism=4, ms=100)
    config["spec"]["timeoutSeconds"] = 4
    kubectl.apply(config)
    run = wait_until(lambda: finished(db, namespace, "slow"), timeout=60, what="the run to time out")
    assert run.status == "TimedOut", f"{run.status}: {run.error}"
    time.sleep(0.5)  # items in flight when it timed out finish (100 ms each)
    calls = sum(endpoint.stats()["calls"].values())
    time.sleep(2)
    assert sum(endpoint.stats()["calls"].values()) == calls, "items were handed out after the timeout"
    assert 0 < calls < 5000
    counts = item_counts(db, run.id)
    assert counts[ItemStatus.RUNNING] == 0 and counts[ItemStatus.SUCCEEDED] == calls
