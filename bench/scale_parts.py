"""What the scale benchmark's phases share: the result of one phase, applying objects, waiting."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import yaml
from common import BenchFailure, kubectl
from tests.support import services

BATCH = 2000  # objects per server-side apply
MARGIN_S = 5
"""Seconds between the end of the set-up and the measured window."""


@dataclass
class Result:
    kind: str
    configs: int
    lags_ms: list[float]
    expected: int
    missed: int
    duplicates: int
    ready_s: float | None = None
    """Operator start (N CronConfigs existing) until it has scheduled every one (its gauge)."""
    status_s: float | None = None
    """Operator start until every CronConfig shows ``status.nextScheduleTime``."""
    cpu_s: float | None = None
    peak_rss_mib: float | None = None
    patches_per_s: float | None = None
    api_per_s: float | None = None
    db_per_run: float | None = None
    runs_per_s: float | None = None
    """Runs started per second in the window (sustained phases)."""
    recorded_per_s: float | None = None
    """Runs whose outcome reached PostgreSQL per second in the window (sustained phases)."""
    receiver_lags_ms: list[float] = field(default_factory=list)
    """The cross-check of ``lags_ms``: the receiver's arrival time (http jobs) or the time the
    handler's code ran (``bench.stamp``), minus the slot."""
    note: str = ""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> tuple[float, float, float, float]:
    """p50, p90, p99, max."""
    return (
        statistics.median(values),
        percentile(values, 0.9),
        percentile(values, 0.99),
        max(values),
    )


def apply(plane: services.ControlPlane, docs: list[dict[str, object]]) -> None:
    for start in range(0, len(docs), BATCH):
        chunk = yaml.safe_dump_all(docs[start : start + BATCH]).encode()
        kubectl(plane, "apply", "--server-side", "-f", "-", stdin=chunk)


def get(plane: services.ControlPlane, *args: str) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(plane.kubeconfig), *args],
        check=True,
        capture_output=True,
        env=plane.env(),
        timeout=600,
    )
    return done.stdout.decode()


def with_status(plane: services.ControlPlane, namespace: str) -> int:
    """How many CronConfigs of ``namespace`` show ``status.nextScheduleTime``."""
    out = get(
        plane,
        "get",
        "cronconfigs",
        "-n",
        namespace,
        "-o",
        "jsonpath={range .items[*]}{.status.nextScheduleTime}{'\\n'}{end}",
    )
    return sum(1 for line in out.splitlines() if line.strip())


def window_start() -> datetime:
    """The measured window begins on a whole second ``MARGIN_S`` from now.

    Any window of k whole minutes holds exactly k slots of every every-minute schedule, spread or
    aligned, so nothing waits for the top of a minute.
    """
    return (datetime.now(UTC) + timedelta(seconds=MARGIN_S)).replace(microsecond=0)


def wait_until(moment: datetime) -> None:
    while (left := (moment - datetime.now(UTC)).total_seconds()) > 0:
        time.sleep(min(left, 1.0))


def poll(what: str, done: Callable[[], bool], *, timeout: float, every: float) -> float:
    """Seconds until ``done()``; fails the benchmark after ``timeout``."""
    t0 = time.monotonic()
    while not done():
        if time.monotonic() - t0 > timeout:
            raise BenchFailure(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - t0
