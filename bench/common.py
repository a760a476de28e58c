"""What the benchmarks share: real components with the CRD installed, and /proc and /metrics readers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import services  # noqa: E402


@contextlib.contextmanager
def components() -> Iterator[tuple[services.ControlPlane, str, str]]:
    """A control plane with the CronConfig CRD established, a migrated PostgreSQL, a Redis."""
    with (
        services.control_plane(controller_manager=False) as plane,
        services.postgres() as pg,
        services.redis() as redis_url,
    ):
        kubectl(plane, "apply", "-f", str(ROOT / "crds"))
        kubectl(plane, "wait", "--for", "condition=established", "crd/cronconfigs.sundial.io")
        from sundial.store import migrate

        migrate.upgrade(pg.url)
        yield plane, pg.url, redis_url


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


def metric(port: int, prefix: str) -> float:
    """The first sample of the operator's /metrics whose line starts with ``prefix``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
    return 0.0
