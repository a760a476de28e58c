"""Fire-lag benchmark: N CronConfigs firing every second with no-op handler jobs.

Real control plane, PostgreSQL and Redis; one or more operator replicas (`sundial run`
subprocesses). Prints fire lag p50/p99/max from the run records, runs recorded per second, each
replica's peak RSS and CPU, and status patches per second. ``--replicas 1,2`` measures one
replica and then two, side by side in one run (each phase with its own namespace and CronConfigs).

    .venv/bin/python bench/fire_lag.py --configs 1000 --seconds 60
    .venv/bin/python bench/fire_lag.py --configs 1000 --seconds 60 --replicas 1,2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml
from common import ROOT, BenchFailure, components, cpu_seconds, kubectl, metric, rss_mib, run, stop
from tests.support import services
from tests.support.operator import OperatorProcess


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


PATCHES = 'sundial_status_patches_total{result="ok"}'


@dataclass
class Phase:
    replicas: int
    rows: list[sa.Row[tuple[str, datetime, datetime | None, str, str | None, str | None]]]
    start: datetime
    end: datetime
    elapsed: float
    cpu: list[float]
    rss: list[float]
    patches: float


def _run_phase(
    args: argparse.Namespace,
    plane: services.ControlPlane,
    db_url: str,
    redis_url: str,
    replicas: int,
) -> Phase:
    namespace = f"bench-{replicas}r"
    kubectl(plane, "create", "namespace", namespace)
    docs = [
        {
            "apiVersion": "sundial.io/v1alpha1",
            "kind": "CronConfig",
            "metadata": {"name": f"noop-{i:05d}", "namespace": namespace},
            "spec": {"schedule": "* * * * * *", "job": {"handler": {"name": "sundial.noop"}}},
        }
        for i in range(args.configs)
    ]
    t = time.monotonic()
    kubectl(plane, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs).encode())
    print(f"[{replicas} replica(s)] created {args.configs} CronConfigs in {time.monotonic() - t:.1f}s")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sundial-bench-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    ops: list[OperatorProcess] = []
    for i in range(replicas):
        name = f"bench-{replicas}r-{i}"
        command: list[str] | None = None
        if args.profile:
            out = f"{args.profile}.{name}"
            command = [sys.executable, "-m", "cProfile", "-o", out, "-m", "sundial.cli", "run"]
        elif args.debug:
            command = [str(ROOT / ".venv/bin/sundial"), "run", "-v"]
        op = OperatorProcess(
            kubeconfig=str(plane.kubeconfig),
            replica=name,
            env={
                "SUNDIAL_DATABASE_URL": db_url,
                "SUNDIAL_REDIS_URL": redis_url,
                "SUNDIAL_NAMESPACES": namespace,
            },
            log_dir=workdir,
            command=command,
        )
        ops.append(op.start())
    pids = [op.proc.pid for op in ops if op.proc is not None]
    try:
        time.sleep(args.warmup)
        start = datetime.now(UTC)
        cpu0 = [cpu_seconds(pid) for pid in pids]
        patches0 = sum(metric(op.port, PATCHES) for op in ops)
        t0 = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        cpu = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
        patches = sum(metric(op.port, PATCHES) for op in ops) - patches0
        rss = [rss_mib(pid, "VmHWM:") for pid in pids]
        end = start + timedelta(seconds=args.seconds)
        _settle(db_url, namespace, end)
    finally:
        failures: list[str] = []
        for op in ops:
            print(f"[{replicas} replica(s)] operator log: {op.log_path}", flush=True)
            try:
                stop(op)
            except BenchFailure as err:
                failures.append(str(err))
        kubectl(plane, "delete", "namespace", namespace, "--wait=false")
    if failures:
        raise BenchFailure("; ".join(failures))
    return Phase(replicas, _window(db_url, namespace, start, end), start, end, elapsed, cpu, rss, patches)


def _window(
    db_url: str, namespace: str, start: datetime, end: datetime
) -> list[sa.Row[tuple[str, datetime, datetime | None, str, str | None, str | None]]]:
    """The scheduled runs of the measured window, one row per (CronConfig, slot) if all went well."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT name, scheduled_for, started_at, status, reason, replica FROM cron_runs "
                    "WHERE namespace = :ns AND scheduled_for > :s AND scheduled_for <= :e "
                    "AND trigger = 'Schedule'"
                ),
                {"ns": namespace, "s": start, "e": end},
            ).all()
    finally:
        engine.dispose()
    return list(rows)


def _settle(db_url: str, namespace: str, end: datetime, timeout: float = 30) -> None:
    """Before stopping: wait (a bounded time) until the window's last slots have fired and
    finished, so a stop that gives back slots claimed ahead cannot take any of the window's."""
    deadline = time.monotonic() + timeout
    engine = sa.create_engine(db_url)
    try:
        while time.monotonic() < deadline:
            if datetime.now(UTC) > end:
                with engine.connect() as conn:
                    unfinished = conn.execute(
                        sa.text(
                            "SELECT count(*) FROM cron_runs WHERE namespace = :ns "
                            "AND scheduled_for <= :e AND status IN ('Pending', 'Running')"
                        ),
                        {"ns": namespace, "e": end},
                    ).scalar_one()
                if not unfinished:
                    return
            time.sleep(0.5)
    finally:
        engine.dispose()


def _check(args: argparse.Namespace, phase: Phase) -> list[str]:
    """Why the phase's numbers cannot be trusted: slots not recorded, recorded twice, not Succeeded."""
    first = phase.start.replace(microsecond=0) + timedelta(seconds=1)
    slots = [first + timedelta(seconds=i) for i in range(args.seconds + 1)]
    slots = [s for s in slots if phase.start < s <= phase.end]
    expected = {(f"noop-{i:05d}", slot) for i in range(args.configs) for slot in slots}
    recorded = Counter((r.name, r.scheduled_for) for r in phase.rows)
    problems: list[str] = []
    missing = sorted(expected - set(recorded))
    if missing:
        sample = ", ".join(f"{name}@{slot.time()}" for name, slot in missing[:5])
        problems.append(f"{len(missing)} of {len(expected)} slots were not recorded (e.g. {sample})")
    twice = [key for key, n in recorded.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} slots were recorded more than once")
    bad = Counter(
        f"{r.status}/{r.reason}" if r.reason else r.status for r in phase.rows if r.status != "Succeeded"
    )
    if bad:
        problems.append(f"{sum(bad.values())} runs did not succeed: {dict(bad)}")
    return [f"{phase.replicas} replica(s): {p}" for p in problems]


def _report(args: argparse.Namespace, phase: Phase) -> float | None:
    rows = phase.rows
    lags = [(r.started_at - r.scheduled_for).total_seconds() * 1000 for r in rows if r.started_at]
    by_status: dict[str, int] = {}
    per_second: dict[datetime, list[float]] = {}
    by_replica: dict[str, int] = {}
    for r in rows:
        key = f"{r.status}/{r.reason}" if r.reason else r.status
        by_status[key] = by_status.get(key, 0) + 1
        by_replica[r.replica] = by_replica.get(r.replica, 0) + 1
        if r.started_at:
            per_second.setdefault(r.scheduled_for, []).append(
                (r.started_at - r.scheduled_for).total_seconds() * 1000
            )
    expected = args.configs * args.seconds
    print(f"== {phase.replicas} replica(s)")
    print(
        f"configs={args.configs} window={args.seconds}s expected_slots={expected} recorded={len(rows)} "
        f"statuses={by_status} runs_by_replica={dict(sorted(by_replica.items()))}"
    )
    if lags:
        print(
            f"fire lag ms: p50={statistics.median(lags):.1f} p99={_percentile(lags, 0.99):.1f} "
            f"max={max(lags):.1f}"
        )
    if args.timeline:
        for second in sorted(per_second):
            values = per_second[second]
            print(
                f"  {second.time()} n={len(values)} "
                f"p50={statistics.median(values):.0f}ms max={max(values):.0f}ms"
            )
    print(f"runs recorded/s: {len(rows) / args.seconds:.1f}")
    for i, (cpu, rss) in enumerate(zip(phase.cpu, phase.rss, strict=True)):
        print(
            f"operator {i}: peak RSS {rss:.0f} MiB, CPU {cpu:.1f}s over {phase.elapsed:.0f}s "
            f"({100 * cpu / phase.elapsed:.0f}% of a core)"
        )
    print(f"status patches/s: {phase.patches / phase.elapsed:.1f}")
    return statistics.median(lags) if lags else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="seconds ignored at the start")
    parser.add_argument("--replicas", default="1", help="comma-separated replica counts, run in turn")
    parser.add_argument("--timeline", action="store_true", help="print lag per slot second")
    parser.add_argument("--profile", help="write a cProfile of each operator to this path prefix")
    parser.add_argument("--debug", action="store_true", help="operator debug log (claim/fire timings)")
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]

    with components() as (plane, db_url, redis_url):
        phases = [_run_phase(args, plane, db_url, redis_url, n) for n in counts]

    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    medians = [_report(args, phase) for phase in phases]
    if len(phases) > 1 and medians[0]:
        for phase, median in zip(phases[1:], medians[1:], strict=True):
            if median is not None:
                print(
                    f"p50 lag ratio {phase.replicas} replicas / {phases[0].replicas}: "
                    f"{median / medians[0]:.2f}"
                )
    problems = [problem for phase in phases for problem in _check(args, phase)]
    if problems:
        raise BenchFailure("\n  ".join(["the measured window is incomplete:", *problems]))


if __name__ == "__main__":
    run(main)
