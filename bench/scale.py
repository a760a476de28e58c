"""Scale: N every-minute schedules in sundial and in the native CronJob controller, side by side.

Real control plane (etcd, kube-apiserver and kube-controller-manager with its cronjob and job
controllers), PostgreSQL and Redis; one operator replica (`sundial run`, a subprocess). For each
scale point N, in one run and in turn:

* ``spread``: N CronConfigs ``S * * * * *`` with S = i mod 60 (every minute, spread over it);
* ``aligned``: N CronConfigs ``0 * * * * *`` (all on the same instant: the top-of-the-hour pile-up);
* ``native``: N CronJobs ``* * * * *`` (the controller's finest grain), their Jobs created with
  ``suspend: true`` so the job controller makes no Pods and only the CronJob controller is measured.

sundial's lag is ``started_at - scheduled_for`` from its run records (sub-millisecond); the native
controller's is a Job's ``creationTimestamp`` (whole seconds) minus the scheduled time it records on
it (``batch.kubernetes.io/cronjob-scheduled-timestamp``). A schedule without a run or Job in the
window is missed; one with two is a duplicate.

    .venv/bin/python bench/scale.py --configs 1000 --minutes 2            # make bench
    .venv/bin/python bench/scale.py --configs 100,1000,10000 --minutes 3  # make bench-full
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml
from common import BenchFailure, components, cpu_seconds, kubectl, metric, rss_mib, run, stop
from tests.support import services
from tests.support.operator import OperatorProcess

PATCHES = 'sundial_status_patches_total{result="ok"}'
BATCH = 2000  # objects per server-side apply


@dataclass
class Result:
    kind: str
    configs: int
    lags_ms: list[float]
    expected: int
    missed: int
    duplicates: int
    ready_s: float | None = None  # operator start until every object has status.nextScheduleTime
    cpu_s: float | None = None
    peak_rss_mib: float | None = None
    patches_per_s: float | None = None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _apply(plane: services.ControlPlane, docs: list[dict[str, object]]) -> None:
    for start in range(0, len(docs), BATCH):
        chunk = yaml.safe_dump_all(docs[start : start + BATCH]).encode()
        kubectl(plane, "apply", "--server-side", "-f", "-", stdin=chunk)


def _get(plane: services.ControlPlane, *args: str) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(plane.kubeconfig), *args],
        check=True,
        capture_output=True,
        env=plane.env(),
        timeout=600,
    )
    return done.stdout.decode()


def _next_minute(after: datetime, margin: float) -> datetime:
    """The first whole minute at least ``margin`` seconds after ``after``."""
    moment = after + timedelta(seconds=margin)
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)


def _wait_until(moment: datetime) -> None:
    while (left := (moment - datetime.now(UTC)).total_seconds()) > 0:
        time.sleep(min(left, 1.0))


def _all_scheduled(plane: services.ControlPlane, namespace: str, count: int) -> int:
    out = _get(
        plane,
        "get",
        "cronconfigs",
        "-n",
        namespace,
        "-o",
        "jsonpath={range .items[*]}{.status.nextScheduleTime}{'\\n'}{end}",
    )
    return sum(1 for line in out.splitlines() if line.strip())


def _sundial(
    args: argparse.Namespace, plane: services.ControlPlane, db: str, redis: str, n: int, kind: str
) -> Result:
    namespace = f"{kind}-{n}"
    kubectl(plane, "create", "namespace", namespace)
    schedule = (lambda i: f"{i % 60} * * * * *") if kind == "spread" else (lambda i: "0 * * * * *")
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "sundial.io/v1alpha1",
            "kind": "CronConfig",
            "metadata": {"name": f"c-{i:05d}", "namespace": namespace},
            "spec": {"schedule": schedule(i), "job": {"handler": {"name": "sundial.noop"}}},
        }
        for i in range(n)
    ]
    t = time.monotonic()
    _apply(plane, docs)
    print(f"[{kind} {n}] created {n} CronConfigs in {time.monotonic() - t:.1f}s", flush=True)
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sundial-scale-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    op = OperatorProcess(
        kubeconfig=str(plane.kubeconfig),
        replica=f"scale-{kind}-{n}",
        env={"SUNDIAL_DATABASE_URL": db, "SUNDIAL_REDIS_URL": redis, "SUNDIAL_NAMESPACES": namespace},
        log_dir=workdir,
    )
    t0 = time.monotonic()
    op.start()
    assert op.proc is not None
    pid = op.proc.pid
    try:
        while (done := _all_scheduled(plane, namespace, n)) < n:
            if time.monotonic() - t0 > 600:
                raise BenchFailure(
                    f"[{kind} {n}] only {done} of {n} have status.nextScheduleTime after 600 s"
                )
            time.sleep(1)
        ready = time.monotonic() - t0
        print(
            f"[{kind} {n}] every CronConfig has status.nextScheduleTime {ready:.1f}s after start", flush=True
        )
        start = _next_minute(datetime.now(UTC), 5)
        end = start + timedelta(minutes=args.minutes)
        _wait_until(start)
        cpu0, patches0, t1 = cpu_seconds(pid), metric(op.port, PATCHES), time.monotonic()
        _wait_until(end)
        time.sleep(3)  # the last slot's records reach the database
        cpu = cpu_seconds(pid) - cpu0
        patches = (metric(op.port, PATCHES) - patches0) / (time.monotonic() - t1)
        peak = rss_mib(pid, "VmHWM:")
    finally:
        print(f"[{kind} {n}] operator log: {op.log_path}", flush=True)
        stop(op)
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT name, scheduled_for, started_at FROM cron_runs WHERE namespace = :ns "
                    "AND trigger = 'Schedule' AND scheduled_for >= :s AND scheduled_for < :e"
                ),
                {"ns": namespace, "s": start, "e": end},
            ).all()
    finally:
        engine.dispose()
    kubectl(plane, "delete", "namespace", namespace, "--wait=false")
    per_slot = Counter((r.name, r.scheduled_for) for r in rows)
    expected = n * args.minutes
    lags = [(r.started_at - r.scheduled_for).total_seconds() * 1000 for r in rows if r.started_at]
    return Result(
        kind,
        n,
        lags,
        expected,
        missed=expected - sum(1 for r in rows if r.started_at),
        duplicates=sum(c - 1 for c in per_slot.values() if c > 1),
        ready_s=ready,
        cpu_s=cpu,
        peak_rss_mib=peak,
        patches_per_s=patches,
    )


def _native(args: argparse.Namespace, plane: services.ControlPlane, n: int) -> Result:
    namespace = f"native-{n}"
    kubectl(plane, "create", "namespace", namespace)
    template = {
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "noop", "image": "busybox", "command": ["true"]}],
                }
            },
        }
    }
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": f"c-{i:05d}", "namespace": namespace},
            "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Allow", "jobTemplate": template},
        }
        for i in range(n)
    ]
    t = time.monotonic()
    _apply(plane, docs)
    print(f"[native {n}] created {n} CronJobs in {time.monotonic() - t:.1f}s", flush=True)
    start = _next_minute(datetime.now(UTC), 5)
    end = start + timedelta(minutes=args.minutes)
    _wait_until(end + timedelta(seconds=args.grace))
    out = _get(plane, "get", "jobs", "-n", namespace, "-o", "json")
    kubectl(plane, "delete", "namespace", namespace, "--wait=false")
    lags: list[float] = []
    per_slot: Counter[tuple[str, str]] = Counter()
    for job in json.loads(out)["items"]:
        meta = job["metadata"]
        scheduled_text = meta.get("annotations", {}).get("batch.kubernetes.io/cronjob-scheduled-timestamp")
        if not scheduled_text:
            continue
        scheduled = datetime.fromisoformat(scheduled_text.replace("Z", "+00:00"))
        if not start <= scheduled < end:
            continue
        created = datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
        owner = meta["ownerReferences"][0]["name"]
        per_slot[(owner, scheduled_text)] += 1
        lags.append((created - scheduled).total_seconds() * 1000)
    expected = n * args.minutes
    return Result(
        "native", n, lags, expected, expected - len(per_slot), sum(c - 1 for c in per_slot.values() if c > 1)
    )


def _row(r: Result) -> str:
    if not r.lags_ms:
        return (
            f"| {r.kind} | {r.configs} | no runs | | | | {r.missed} of {r.expected} | {r.duplicates} | | | |"
        )
    p = [
        statistics.median(r.lags_ms),
        _percentile(r.lags_ms, 0.9),
        _percentile(r.lags_ms, 0.99),
        max(r.lags_ms),
    ]
    runs = r.expected - r.missed
    cpu = f"{1000 * r.cpu_s / runs:.2f}" if r.cpu_s is not None and runs else ""
    rss = f"{r.peak_rss_mib:.0f}" if r.peak_rss_mib else ""
    ready = f"{r.ready_s:.1f}" if r.ready_s is not None else ""
    patches = f"{r.patches_per_s:.1f}" if r.patches_per_s is not None else ""
    lag = " | ".join(f"{v:,.0f}" if v >= 100 else f"{v:.1f}" for v in p)
    counts = f"{r.missed} of {r.expected:,} | {r.duplicates}"
    return f"| {r.kind} | {r.configs:,} | {lag} | {counts} | {ready} | {cpu} | {rss} | {patches} |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="1000", help="comma-separated scale points")
    parser.add_argument("--minutes", type=int, default=2, help="measured window per phase")
    parser.add_argument("--kinds", default="spread,aligned,native", help="phases, run in this order")
    parser.add_argument(
        "--grace", type=int, default=60, help="seconds the native controller gets after the window"
    )
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    results: list[Result] = []
    with components(controller_manager="native" in kinds) as (plane, db, redis):
        for n in (int(x) for x in args.configs.split(",")):
            for kind in kinds:
                results.append(
                    _native(args, plane, n) if kind == "native" else _sundial(args, plane, db, redis, n, kind)
                )
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}, window {args.minutes} min per phase")
    print(
        "| kind | N | lag p50 ms | p90 | p99 | max | missed | duplicates | ready s | CPU s / 1,000 runs "
        "| peak RSS MiB | status patches/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(_row(r))
    for n in sorted({r.configs for r in results}):
        by = {r.kind: r for r in results if r.configs == n and r.lags_ms}
        for kind in ("spread", "aligned"):
            if "native" in by and kind in by:
                ratio = statistics.median(by["native"].lags_ms) / max(
                    statistics.median(by[kind].lags_ms), 0.001
                )
                print(f"N={n}: native CronJob p50 lag / sundial {kind} p50 lag = {ratio:,.0f}x")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results]))
    wrong = [r for r in results if r.kind != "native" and (r.missed or r.duplicates)]
    if wrong:
        raise BenchFailure(
            "; ".join(f"{r.kind} {r.configs}: {r.missed} missed, {r.duplicates} twice" for r in wrong)
        )


if __name__ == "__main__":
    run(main)
