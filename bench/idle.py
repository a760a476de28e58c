"""Idle cost: N CronConfigs of which none is due. Memory per CronConfig and CPU while nothing fires.

Real control plane, PostgreSQL and Redis, one operator replica. The CronConfigs fire once a year
(``0 0 1 1 *``); after they are all scheduled, the operator's CPU is measured over ``--seconds``.
Peak RSS is compared with an operator watching an empty namespace, side by side in one run.

    .venv/bin/python bench/idle.py --configs 10000 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from common import BenchFailure, components, cpu_seconds, kubectl, metric, rss_mib, run, stop
from tests.support.operator import OperatorProcess


def _scheduled(port: int) -> float:
    return metric(port, "sundial_scheduled_cronconfigs ")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    with components() as (plane, db_url, redis_url):
        for ns in ("idle", "empty"):
            kubectl(plane, "create", "namespace", ns)
        t = time.monotonic()
        for start in range(0, args.configs, 2000):
            docs = [
                {
                    "apiVersion": "sundial.io/v1alpha1",
                    "kind": "CronConfig",
                    "metadata": {"name": f"yearly-{i:05d}", "namespace": "idle"},
                    "spec": {"schedule": "0 0 1 1 *", "job": {"handler": {"name": "sundial.noop"}}},
                }
                for i in range(start, min(start + 2000, args.configs))
            ]
            kubectl(plane, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs).encode())
        print(f"created {args.configs} CronConfigs in {time.monotonic() - t:.1f}s", flush=True)
        workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sundial-idle-{os.getpid()}"
        workdir.mkdir(parents=True, exist_ok=True)
        results: dict[str, tuple[float, float, float, float]] = {}
        for ns, count in (("empty", 0), ("idle", args.configs)):
            op = OperatorProcess(
                kubeconfig=str(plane.kubeconfig),
                replica=f"idle-{ns}",
                env={
                    "SUNDIAL_DATABASE_URL": db_url,
                    "SUNDIAL_REDIS_URL": redis_url,
                    "SUNDIAL_NAMESPACES": ns,
                },
                log_dir=workdir,
            ).start()
            assert op.proc is not None
            pid = op.proc.pid
            try:
                t0 = time.monotonic()
                while (scheduled := _scheduled(op.port)) < count and time.monotonic() - t0 < 600:
                    time.sleep(0.5)
                if scheduled < count:
                    raise BenchFailure(
                        f"only {scheduled:.0f} of {count} CronConfigs were scheduled after 600 s"
                    )
                ready = time.monotonic() - t0
                time.sleep(10)  # status patches of the newly seen CronConfigs drain at the QPS budget
                while time.monotonic() - t0 < ready + count / 50 + 10:
                    time.sleep(1)
                cpu0 = cpu_seconds(pid)
                time.sleep(args.seconds)
                cpu = cpu_seconds(pid) - cpu0
                results[ns] = (ready, rss_mib(pid), rss_mib(pid, "VmHWM:"), cpu)
                if op.proc.poll() is not None:
                    raise BenchFailure(f"operator exited with {op.proc.returncode}; log: {op.log_path}")
            finally:
                stop(op)
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    for ns, (ready, rss, hwm, cpu) in results.items():
        n = args.configs if ns == "idle" else 0
        print(
            f"{n:>6} CronConfigs: scheduled after {ready:.1f}s, RSS {rss:.0f} MiB (peak {hwm:.0f}), "
            f"CPU {cpu:.2f}s over {args.seconds}s ({100 * cpu / args.seconds:.1f}% of a core) "
            "while nothing is due"
        )
    base, loaded = results["empty"][1], results["idle"][1]
    print(f"memory per CronConfig: {(loaded - base) * 1024 / max(args.configs, 1):.1f} KiB")


if __name__ == "__main__":
    run(main)
