"""Job execution as a user sees it: link-local refusal, jitter at run time, handlers from SUNDIAL_HANDLERS."""

from __future__ import annotations

import statistics
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from sundial.scheduling import jitter_offset
from sundial.store.records import RunRecord
from tests.integration.conftest import Receiver, StartOperator, runs_of, serve_receiver, sundial_env
from tests.support.digest import fingerprint
from tests.support.kube import Kubectl, cronconfig, wait_until

pytestmark = pytest.mark.k8s

LINK_LOCAL = "169.254.123.1"


@pytest.fixture
def link_local_receiver() -> Iterator[Receiver]:
    """A receiver listening on a link-local address added to the loopback interface."""
    added = subprocess.run(
        ["ip", "addr", "add", f"{LINK_LOCAL}/32", "dev", "lo"], capture_output=True, text=True, check=False
    )
    assert added.returncode == 0, f"cannot add {LINK_LOCAL} to lo (root needed): {added.stderr}"
    try:
        with serve_receiver(LINK_LOCAL) as rec:
            yield rec
    finally:
        subprocess.run(["ip", "addr", "del", f"{LINK_LOCAL}/32", "dev", "lo"], check=False)


def test_link_local_is_refused_unless_allowed(
    kubectl: Kubectl,
    namespace: str,
    pg_redis: tuple[str, str],
    operator_for: StartOperator,
    link_local_receiver: Receiver,
) -> None:
    """An HTTP job to 169.254.0.0/16 fails with the refusal (naming ``SUNDIAL_ALLOW_LINK_LOCAL``)
    and sends nothing; the same CronConfig under an operator started with
    ``SUNDIAL_ALLOW_LINK_LOCAL=true`` reaches the endpoint."""
    db, redis = pg_redis
    strict = operator_for(sundial_env(db, redis, namespace), replica="strict")
    kubectl.apply(
        cronconfig(
            "metadata",
            namespace,
            schedule="* * * * * *",
            timeoutSeconds=2,
            job={"http": {"url": link_local_receiver.url, "method": "GET"}},
        )
    )
    refused = wait_until(
        lambda: next((r for r in runs_of(db, namespace, "metadata") if r.status == "Failed"), None),
        what="a refused run",
    )
    assert refused.reason == "JobFailed"
    assert f"refusing to call link-local address {LINK_LOCAL}" in (refused.error or "")
    assert "SUNDIAL_ALLOW_LINK_LOCAL=true" in (refused.error or "")
    assert strict.stop() == 0
    assert link_local_receiver.requests == [], "a refused request must not be sent"

    operator_for(sundial_env(db, redis, namespace, SUNDIAL_ALLOW_LINK_LOCAL="true"), replica="lenient")
    allowed = wait_until(
        lambda: next(
            (
                r
                for r in runs_of(db, namespace, "metadata")
                if r.replica == "lenient" and r.status in ("Succeeded", "Failed", "TimedOut")
            ),
            None,
        ),
        what="a run with the override",
    )
    assert allowed.status == "Succeeded", (allowed.status, allowed.error)
    assert allowed.result["statusCode"] == 200
    assert link_local_receiver.requests and link_local_receiver.requests[0]["method"] == "GET"


def test_jitter_delays_each_run_by_its_stable_offset(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    """With ``jitterSeconds`` each run starts at its slot plus ``jitter_offset(uid, slot, jitter)``,
    the offset every replica computes the same; the slot recorded is the unjittered one."""
    db, redis = pg_redis
    operator_for(sundial_env(db, redis, namespace))
    jitter = 2
    kubectl.apply(
        cronconfig(
            "jittery",
            namespace,
            schedule="*/2 * * * * *",
            jitterSeconds=jitter,
            job={"handler": {"name": "sundial.noop"}},
        )
    )
    uid = kubectl.get("cronconfig", "jittery", namespace)["metadata"]["uid"]

    def started() -> list[RunRecord] | None:
        # (a slot that passed before the operator first read the history runs late, as CatchUp)
        runs = [
            r
            for r in runs_of(db, namespace, "jittery")
            if r.trigger == "Schedule" and r.started_at is not None
        ]
        return runs if len(runs) >= 4 else None

    runs = wait_until(started, timeout=30, what="four runs")
    offsets = [jitter_offset(uid, r.scheduled_for, jitter) for r in runs]
    late = [
        (r.started_at - r.scheduled_for).total_seconds() - offset
        for r, offset in zip(runs, offsets, strict=True)
        if r.started_at
    ]
    assert all(r.scheduled_for.microsecond == 0 and r.scheduled_for.second % 2 == 0 for r in runs)
    assert len(set(offsets)) == len(offsets), "each slot has its own offset"
    assert all(-0.01 <= x < 1.5 for x in late), f"start minus (slot + offset), seconds: {late}"
    assert statistics.median(late) < 0.3, f"start minus (slot + offset), seconds: {late}"


def test_sync_and_async_handlers_run_and_read_secrets(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    """Handlers loaded from a module named in ``SUNDIAL_HANDLERS`` run: an async one on the event
    loop and a sync one in a worker thread. Both read a Secret through ``ctx.secret`` (the sync
    one with ``asyncio.run``), and their return values, context and captured logs are recorded."""
    db, redis = pg_redis
    value = f"tok-{uuid.uuid4().hex}"
    kubectl.run("create", "secret", "generic", "creds", "-n", namespace, f"--from-literal=password={value}")
    operator_for(sundial_env(db, redis, namespace, SUNDIAL_HANDLERS="tests.handlers_fixture"))
    context = {"secretName": "creds", "secretKey": "password"}
    for kind in ("sync", "async"):
        kubectl.apply(
            cronconfig(
                kind,
                namespace,
                schedule="* * * * * *",
                context={**context, "kind": kind},
                job={"handler": {"name": f"tests.{kind}_secret"}},
            )
        )
    for kind in ("sync", "async"):
        run = wait_until(
            lambda k=kind: next((r for r in runs_of(db, namespace, k) if r.finished_at), None),  # type: ignore[misc]
            what=f"a finished {kind} handler run",
        )
        assert (run.status, run.error) == ("Succeeded", None), run
        assert run.result == {
            "kind": kind,
            "fingerprint": fingerprint(value),
            "mainThread": kind == "async",
            "context": {**context, "kind": kind},
        }
        assert [entry["message"] for entry in run.logs] == [f"{kind} handler ran"]
