"""Fire-lag benchmark: N CronConfigs firing every second with no-op handler jobs.

Real control plane, PostgreSQL and Redis, one operator replica (`sundial run` subprocess).
Prints fire lag p50/p99/max from the run records, runs recorded per second, the operator's peak
RSS and CPU, and status patches per second.

    .venv/bin/python bench/fire_lag.py --configs 1000 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import services  # noqa: E402
from tests.support.operator import OperatorProcess  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _metric(port: int, prefix: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
    return 0.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="seconds ignored at the start")
    parser.add_argument("--timeline", action="store_true", help="print lag per slot second")
    parser.add_argument("--profile", help="write a cProfile of the operator to this file")
    parser.add_argument("--debug", action="store_true", help="operator debug log (claim/fire timings)")
    args = parser.parse_args()

    with (
        services.control_plane(controller_manager=False) as plane,
        services.postgres() as pg,
        services.redis() as redis_url,
    ):
        env = plane.env()
        kubectl = ["kubectl", "--kubeconfig", str(plane.kubeconfig)]
        subprocess.run(
            [*kubectl, "apply", "-f", str(ROOT / "crds")], check=True, capture_output=True, env=env
        )
        subprocess.run(
            [*kubectl, "wait", "--for", "condition=established", "crd/cronconfigs.sundial.io"],
            check=True,
            capture_output=True,
            env=env,
        )
        subprocess.run([*kubectl, "create", "namespace", "bench"], check=True, capture_output=True, env=env)
        docs = [
            {
                "apiVersion": "sundial.io/v1alpha1",
                "kind": "CronConfig",
                "metadata": {"name": f"noop-{i:05d}", "namespace": "bench"},
                "spec": {"schedule": "* * * * * *", "job": {"handler": {"name": "sundial.noop"}}},
            }
            for i in range(args.configs)
        ]
        t = time.monotonic()
        subprocess.run(
            [*kubectl, "apply", "--server-side", "-f", "-"],
            input=yaml.safe_dump_all(docs).encode(),
            check=True,
            capture_output=True,
            env=env,
        )
        print(f"created {args.configs} CronConfigs in {time.monotonic() - t:.1f}s", flush=True)

        from sundial.store import migrate

        migrate.upgrade(pg.url)
        workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sundial-bench-{os.getpid()}"
        workdir.mkdir(parents=True, exist_ok=True)
        op = OperatorProcess(
            kubeconfig=str(plane.kubeconfig),
            replica="bench",
            env={
                "SUNDIAL_DATABASE_URL": pg.url,
                "SUNDIAL_REDIS_URL": redis_url,
                "SUNDIAL_NAMESPACES": "bench",
            },
            log_dir=workdir,
            command=[sys.executable, "-m", "cProfile", "-o", args.profile, "-m", "sundial.cli", "run"]
            if args.profile
            else [str(ROOT / ".venv/bin/sundial"), "run", "-v"]
            if args.debug
            else None,
        ).start()
        assert op.proc is not None
        pid = op.proc.pid
        try:
            time.sleep(args.warmup)
            start = datetime.now(UTC)
            cpu0, patches0 = _cpu_seconds(pid), _metric(op.port, 'sundial_status_patches_total{result="ok"}')
            t0 = time.monotonic()
            time.sleep(args.seconds)
            elapsed = time.monotonic() - t0
            cpu = _cpu_seconds(pid) - cpu0
            patches = _metric(op.port, 'sundial_status_patches_total{result="ok"}') - patches0
            end = start + timedelta(seconds=args.seconds)
            rss = _peak_rss_mib(pid)
        finally:
            print(f"operator log: {op.log_path}", flush=True)
            try:
                op.stop(timeout=60)
            except subprocess.TimeoutExpired:
                print("operator did not stop within 60s of SIGTERM; killed", flush=True)
        engine = sa.create_engine(pg.url)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT scheduled_for, started_at, status, reason FROM cron_runs "
                    "WHERE scheduled_for > :s AND scheduled_for <= :e AND trigger = 'Schedule'"
                ),
                {"s": start, "e": end},
            ).all()
        engine.dispose()

    lags = [(r.started_at - r.scheduled_for).total_seconds() * 1000 for r in rows if r.started_at]
    by_status: dict[str, int] = {}
    per_second: dict[datetime, list[float]] = {}
    for r in rows:
        key = f"{r.status}/{r.reason}" if r.reason else r.status
        by_status[key] = by_status.get(key, 0) + 1
        if r.started_at:
            per_second.setdefault(r.scheduled_for, []).append(
                (r.started_at - r.scheduled_for).total_seconds() * 1000
            )
    expected = args.configs * args.seconds
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(
        f"configs={args.configs} window={args.seconds}s expected_slots={expected} recorded={len(rows)} "
        f"statuses={by_status}"
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
    print(
        f"operator: peak RSS {rss:.0f} MiB, CPU {cpu:.1f}s over {elapsed:.0f}s "
        f"({100 * cpu / elapsed:.0f}% of a core)"
    )
    print(f"status patches/s: {patches / elapsed:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
