"""The scale benchmark's sundial phases: one operator replica, N CronConfigs, a measured window.

Every-minute phases (``spread``, ``aligned``, and their ``-http`` variants) create the
CronConfigs first and then start the operator, so its start-up with N existing CronConfigs is
timed; ``sustained`` starts the operator first and times ``kubectl apply`` of N every-second
CronConfigs until all are scheduled, then measures how many runs a second it starts and records.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import profile_top
import sqlalchemy as sa
from common import cpu_seconds, kubectl, metric, metric_sum, receiver, rss_mib, stop
from scale_parts import Result, apply, poll, wait_until, window_start, with_status
from tests.support import services
from tests.support.operator import OperatorProcess

PATCHES = 'sundial_status_patches_total{result="ok"}'
SCHEDULED = "sundial_scheduled_cronconfigs "
DB_STATEMENTS = "sundial_db_statements_total "
KUBE_REQUESTS = "sundial_kube_requests_total"


def _docs(namespace: str, n: int, schedule: Any, job: Any) -> list[dict[str, object]]:
    return [
        {
            "apiVersion": "sundial.io/v1alpha1",
            "kind": "CronConfig",
            "metadata": {"name": f"c-{i:05d}", "namespace": namespace},
            "spec": {"schedule": schedule(i), "job": job(f"c-{i:05d}")},
        }
        for i in range(n)
    ]


def _job(url: str | None) -> Any:
    if url is None:
        return lambda name: {"handler": {"name": "bench.stamp"}}
    return lambda name: {"http": {"url": f"{url}/hook/{name}", "method": "POST"}}


@contextlib.contextmanager
def _maybe_receiver(http: bool, workdir: Path) -> Iterator[tuple[str | None, Path | None]]:
    if not http:
        yield None, None
        return
    with receiver(workdir) as (url, out):
        yield url, out


def _operator(
    plane: services.ControlPlane, db: str, redis: str, namespace: str, workdir: Path
) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig=str(plane.kubeconfig),
        replica=f"scale-{namespace}",
        env={
            "SUNDIAL_DATABASE_URL": db,
            "SUNDIAL_REDIS_URL": redis,
            "SUNDIAL_NAMESPACES": namespace,
            "SUNDIAL_HANDLERS": "sundial.examples,bench.stamp",
        },
        log_dir=workdir,
    )


class _Counters:
    """The operator's counters at the start of the window, for rates over it."""

    def __init__(self, op: OperatorProcess, pid: int) -> None:
        self.op, self.pid = op, pid
        self.t = time.monotonic()
        self.cpu = cpu_seconds(pid)
        self.patches = metric(op.port, PATCHES)
        self.api = metric_sum(op.port, KUBE_REQUESTS)
        self.db = metric(op.port, DB_STATEMENTS)

    def deltas(self) -> tuple[float, float, float, float, float]:
        """Seconds, CPU seconds, patches/s, API requests/s, statements."""
        op, elapsed = self.op, time.monotonic() - self.t
        return (
            elapsed,
            cpu_seconds(self.pid) - self.cpu,
            (metric(op.port, PATCHES) - self.patches) / elapsed,
            (metric_sum(op.port, KUBE_REQUESTS) - self.api) / elapsed,
            metric(op.port, DB_STATEMENTS) - self.db,
        )


def _rows(db: str, namespace: str, start: datetime, end: datetime) -> list[Any]:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT name, scheduled_for, started_at, finished_at, result FROM cron_runs "
                        "WHERE namespace = :ns AND trigger = 'Schedule' "
                        "AND scheduled_for >= :s AND scheduled_for < :e"
                    ),
                    {"ns": namespace, "s": start, "e": end},
                ).all()
            )
    finally:
        engine.dispose()


def _stamped(rows: list[Any]) -> list[float]:
    """When each run's handler code ran (``bench.stamp``'s result), minus its slot."""
    out = []
    for r in rows:
        result = r.result if isinstance(r.result, dict) else json.loads(r.result) if r.result else None
        if isinstance(result, dict) and "t" in result:
            out.append((result["t"] - r.scheduled_for.timestamp()) * 1000)
    return out


def _received(path: Path | None, rows: list[Any], start: datetime, end: datetime) -> list[float]:
    """The receiver's arrival times (http jobs) or the handlers' stamps (no-op jobs), minus the slot."""
    if path is None or not path.exists():
        return _stamped(rows)
    lags = []
    for line in path.read_text().splitlines():
        hit = json.loads(line)
        slot = datetime.fromisoformat(hit["slot"])
        if start <= slot < end:
            lags.append((hit["t"] - slot.timestamp()) * 1000)
    return lags


def _profile(
    args: argparse.Namespace, pid: int, label: str, seconds: int
) -> tuple[subprocess.Popen[bytes], Path] | None:
    """py-spy on the operator for the window (``--profile DIR``), its collapsed stacks in DIR."""
    if not args.profile:
        return None
    out = Path(args.profile) / f"{label}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    command = [str(spy), "record", "--pid", str(pid), "--rate", "250", "--duration", str(seconds)]
    proc = subprocess.Popen(
        [*command, "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, out


def _report(spy: tuple[subprocess.Popen[bytes], Path] | None) -> None:
    if spy is None:
        return
    proc, out = spy
    proc.wait(timeout=60)
    if out.exists():
        print(f"profile {out}:\n{profile_top.top(out, 15)}", flush=True)


def every_minute(
    args: argparse.Namespace, plane: services.ControlPlane, db: str, redis: str, n: int, kind: str
) -> Result:
    namespace = f"{kind}-{n}"
    http = kind.endswith("-http")
    aligned = kind.startswith("aligned")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sundial-scale-{os.getpid()}" / namespace
    workdir.mkdir(parents=True, exist_ok=True)
    kubectl(plane, "create", "namespace", namespace)
    with _maybe_receiver(http, workdir) as (url, received):
        schedule = (lambda i: "0 * * * * *") if aligned else (lambda i: f"{i % 60} * * * * *")
        t = time.monotonic()
        apply(plane, _docs(namespace, n, schedule, _job(url)))
        print(f"[{kind} {n}] created {n} CronConfigs in {time.monotonic() - t:.1f}s", flush=True)
        op = _operator(plane, db, redis, namespace, workdir)
        t0 = time.monotonic()
        op.start()
        assert op.proc is not None
        pid = op.proc.pid
        try:
            spy = _profile(args, pid, f"{kind}-{n}-startup", 600)
            poll(
                f"[{kind} {n}] all scheduled", lambda: metric(op.port, SCHEDULED) >= n, timeout=600, every=0.2
            )
            ready = time.monotonic() - t0  # from operator start (op.start() waits for /healthz)
            if spy is not None:
                spy[0].send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
            _report(spy)
            poll(
                f"[{kind} {n}] all with status",
                lambda: with_status(plane, namespace) >= n,
                timeout=900,
                every=2,
            )
            status = time.monotonic() - t0
            print(
                f"[{kind} {n}] all scheduled {ready:.1f}s, all with status {status:.1f}s after start",
                flush=True,
            )
            start = window_start()
            end = start + timedelta(minutes=args.minutes)
            wait_until(start)
            counters = _Counters(op, pid)
            spy = _profile(args, pid, f"{kind}-{n}", args.minutes * 60)
            wait_until(end)
            time.sleep(3)  # the last slot's records reach the database
            _report(spy)
            _, cpu, patches, api, statements = counters.deltas()
            peak = rss_mib(pid, "VmHWM:")
        finally:
            print(f"[{kind} {n}] operator log: {op.log_path}", flush=True)
            stop(op)
    rows = _rows(db, namespace, start, end)
    kubectl(plane, "delete", "namespace", namespace, "--wait=false")
    per_slot = Counter((r.name, r.scheduled_for) for r in rows)
    started = [r for r in rows if r.started_at]
    return Result(
        kind,
        n,
        [(r.started_at - r.scheduled_for).total_seconds() * 1000 for r in started],
        expected=n * args.minutes,
        missed=n * args.minutes - len({(r.name, r.scheduled_for) for r in started}),
        duplicates=sum(c - 1 for c in per_slot.values() if c > 1),
        ready_s=ready,
        status_s=status,
        cpu_s=cpu,
        peak_rss_mib=peak,
        patches_per_s=patches,
        api_per_s=api,
        db_per_run=statements / max(len(started), 1),
        receiver_lags_ms=_received(received, rows, start, end),
    )


def sustained(args: argparse.Namespace, plane: services.ControlPlane, db: str, redis: str, n: int) -> Result:
    """N every-second no-op CronConfigs: N runs a second asked for; how many are started and recorded."""
    namespace = f"sustained-{n}"
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sundial-scale-{os.getpid()}" / namespace
    workdir.mkdir(parents=True, exist_ok=True)
    kubectl(plane, "create", "namespace", namespace)
    op = _operator(plane, db, redis, namespace, workdir)
    op.start()
    assert op.proc is not None
    pid = op.proc.pid
    seconds = args.sustained_seconds
    try:
        t0 = time.monotonic()
        apply(plane, _docs(namespace, n, lambda i: "* * * * * *", _job(None)))
        poll(
            f"[sustained {n}] all scheduled", lambda: metric(op.port, SCHEDULED) >= n, timeout=600, every=0.2
        )
        ready = time.monotonic() - t0
        print(f"[sustained {n}] kubectl apply of {n} until all scheduled: {ready:.1f}s", flush=True)
        time.sleep(10)  # the first status patches of N new CronConfigs pass
        start = window_start()
        end = start + timedelta(seconds=seconds)
        wait_until(start)
        counters = _Counters(op, pid)
        wait_until(end)
        _, cpu, patches, api, statements = counters.deltas()
        time.sleep(5)
        peak = rss_mib(pid, "VmHWM:")
    finally:
        print(f"[sustained {n}] operator log: {op.log_path}", flush=True)
        stop(op)
    rows = _rows(db, namespace, start, end)
    kubectl(plane, "delete", "namespace", namespace, "--wait=false")
    started = [r for r in rows if r.started_at]
    recorded = [r for r in rows if r.finished_at and r.finished_at < end + timedelta(seconds=1)]
    per_slot = Counter((r.name, r.scheduled_for) for r in rows)
    expected = n * seconds
    if not started:  # fell behind completely: a result, not a broken benchmark
        print(f"[sustained {n}] no run started in the window; see {op.log_path}", flush=True)
    return Result(
        "sustained",
        n,
        [(r.started_at - r.scheduled_for).total_seconds() * 1000 for r in started],
        expected=expected,
        missed=expected - len({(r.name, r.scheduled_for) for r in started}),
        duplicates=sum(c - 1 for c in per_slot.values() if c > 1),
        ready_s=ready,
        cpu_s=cpu,
        peak_rss_mib=peak,
        patches_per_s=patches,
        api_per_s=api,
        db_per_run=statements / max(len(started), 1),
        receiver_lags_ms=_stamped(rows),
        runs_per_s=len(started) / seconds,
        recorded_per_s=len(recorded) / seconds,
        note="ready: after kubectl apply, operator running",
    )
