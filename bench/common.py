"""What the benchmarks share: real components with the CRD installed, and /proc and /metrics readers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import services  # noqa: E402
from tests.support.operator import OperatorProcess  # noqa: E402


@contextlib.contextmanager
def components(*, controller_manager: bool = False) -> Iterator[tuple[services.ControlPlane, str, str]]:
    """A control plane with the CronConfig CRD established, a migrated PostgreSQL, a Redis."""
    with (
        services.control_plane(controller_manager=controller_manager) as plane,
        services.postgres() as pg,
        services.redis() as redis_url,
    ):
        kubectl(plane, "apply", "-f", str(ROOT / "crds"))
        kubectl(plane, "wait", "--for", "condition=established", "crd/cronconfigs.sundial.io")
        from sundial.store import migrate

        migrate.upgrade(pg.url)
        yield plane, pg.url, redis_url


@contextlib.contextmanager
def receiver(workdir: Path) -> Iterator[tuple[str, Path]]:
    """bench/chaos_receiver.py in its own process; yields its base URL and the file it writes."""
    port, out = services.free_port(), workdir / "received.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "chaos_receiver.py"), str(port), str(out)],
        stdout=(workdir / "receiver.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchFailure(f"the receiver did not start; see {workdir / 'receiver.log'}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kubectl(plane: services.ControlPlane, *args: str, stdin: bytes | None = None) -> None:
    subprocess.run(
        ["kubectl", "--kubeconfig", str(plane.kubeconfig), *args],
        input=stdin,
        check=True,
        capture_output=True,
        env=plane.env(),
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str = "VmRSS:") -> float:
    """Current RSS, or the peak with ``field="VmHWM:"``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


class BenchFailure(Exception):
    """The numbers cannot be trusted (a slot not recorded, a metric missing): exit 1, say why."""


def metric(port: int, prefix: str) -> float:
    """The first sample of the operator's /metrics whose line starts with ``prefix``.

    A labelled sample not created yet (a counter nothing has incremented) is 0; a metric whose
    family the operator does not export at all raises :class:`BenchFailure`.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    for line in lines:
        if line.startswith(prefix):
            return float(line.split()[-1])
    family = prefix.split("{", 1)[0].strip()
    declared = {f"# TYPE {family} ", f"# TYPE {family.removesuffix('_total')} "}
    if "{" in prefix and any(line.startswith(tuple(declared)) for line in lines):
        return 0.0
    raise BenchFailure(f"metric {prefix.strip()!r} is missing from /metrics of the operator on port {port}")


def metric_sum(port: int, family: str) -> float:
    """The sum of every sample of a labelled metric family (all label values)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    declared = (f"# TYPE {family} ", f"# TYPE {family.removesuffix('_total')} ")
    if not any(line.startswith(declared) for line in lines):
        raise BenchFailure(f"metric {family!r} is missing from /metrics of the operator on port {port}")
    return sum(float(line.split()[-1]) for line in lines if line.startswith(family + "{"))


def stop(op: OperatorProcess) -> None:
    """SIGTERM one operator; anything but a clean exit 0 within 60 s fails the benchmark."""
    try:
        code = op.stop(timeout=60)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"operator {op.replica} did not stop within 60 s of SIGTERM (killed)") from None
    if code != 0:
        raise BenchFailure(f"operator {op.replica} exited with {code} after SIGTERM; log: {op.log_path}")


def run(main: Callable[[], None]) -> NoReturn:
    """Run a benchmark's ``main`` and exit: 0, or 1 with the reason on stderr."""
    try:
        main()
    except BenchFailure as err:
        print(f"BENCHMARK FAILED: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(0)
