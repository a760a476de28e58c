"""The scale benchmark's anchors: the native CronJob controller and arq, with the same schedules.

``native``: N CronJobs ``* * * * *`` (the controller's finest grain) in the local control plane,
their Jobs created with ``suspend: true`` so the job controller makes no Pods and only the CronJob
controller is measured. Lag = the Job's ``creationTimestamp`` (whole seconds) minus the scheduled
time the controller records on it (``batch.kubernetes.io/cronjob-scheduled-timestamp``).

``arq-spread``/``arq-aligned``: one arq worker (bench/arq_worker.py, its own process) with N cron
jobs on the same Redis. Lag = the job's start minus the scheduled instant in its job id.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import ROOT, BenchFailure, cpu_seconds, kubectl, rss_mib
from scale_parts import Result, apply, get, wait_until, window_start
from tests.support import services

ARQ_PYTHON = ROOT / ".venv-arq" / "bin" / "python"
"""arq pins redis<6 and the operator needs newer: arq gets a venv of its own (make bench-deps)."""


def native(args: argparse.Namespace, plane: services.ControlPlane, n: int) -> Result:
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
    apply(plane, docs)
    print(f"[native {n}] created {n} CronJobs in {time.monotonic() - t:.1f}s", flush=True)
    start = window_start()
    end = start + timedelta(minutes=args.minutes)
    wait_until(end + timedelta(seconds=args.grace))
    out = get(plane, "get", "jobs", "-n", namespace, "-o", "json")
    # waited for: the garbage collector deleting N CronJobs and their Jobs would load the next phase
    kubectl(plane, "delete", "namespace", namespace, "--timeout=600s")
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
        per_slot[(meta["ownerReferences"][0]["name"], scheduled_text)] += 1
        lags.append((created - scheduled).total_seconds() * 1000)
    expected = n * args.minutes
    return Result(
        "native", n, lags, expected, expected - len(per_slot), sum(c - 1 for c in per_slot.values() if c > 1)
    )


def arq(args: argparse.Namespace, redis: str, n: int, kind: str) -> Result:
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sundial-scale-{os.getpid()}" / f"{kind}-{n}"
    workdir.mkdir(parents=True, exist_ok=True)
    out, log = workdir / "runs.txt", workdir / "arq.log"
    schedules = kind.removeprefix("arq-")
    proc = subprocess.Popen(
        [
            str(ARQ_PYTHON),
            str(ROOT / "bench" / "arq_worker.py"),
            redis,
            str(n),
            schedules,
            f"{kind}-{n}",
            str(out),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(3)  # the worker connects and computes its first slots
        if proc.poll() is not None:
            raise BenchFailure(f"[{kind} {n}] the arq worker exited with {proc.returncode}; see {log}")
        start = window_start()
        end = start + timedelta(minutes=args.minutes)
        wait_until(start)
        cpu0 = cpu_seconds(proc.pid)
        wait_until(end)
        time.sleep(3)
        cpu = cpu_seconds(proc.pid) - cpu0
        peak = rss_mib(proc.pid, "VmHWM:")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    lags: list[float] = []
    per_slot: Counter[tuple[str, int]] = Counter()
    lo, hi = start.timestamp() * 1000, end.timestamp() * 1000
    for line in out.read_text().splitlines() if out.exists() else []:
        name, scheduled_ms, started = line.split()
        if lo <= int(scheduled_ms) < hi:
            per_slot[(name, int(scheduled_ms))] += 1
            lags.append(float(started) * 1000 - int(scheduled_ms))
    expected = n * args.minutes
    print(
        f"[{kind} {n}] {len(lags)} runs of {expected} in the window ({datetime.now(UTC):%H:%M:%S})",
        flush=True,
    )
    return Result(
        kind,
        n,
        lags,
        expected,
        expected - len(per_slot),
        sum(c - 1 for c in per_slot.values() if c > 1),
        cpu_s=cpu,
        peak_rss_mib=peak,
    )
