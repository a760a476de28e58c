"""The chaos benchmark's faults: a seeded plan, and the code that inflicts each one and records when.

Kinds: ``kill`` (SIGKILL one operator replica, restart it at once under the same name),
``redis`` (restart Redis empty), ``postgres`` (stop PostgreSQL for a while, same data dir and
port), ``apiserver`` (stop kube-apiserver for a few seconds and start it with the same flags,
etcd untouched). Never two at once: each starts at least ``GAP`` seconds after the previous one
ended, so every effect in the history can be tied to one cause.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common  # noqa: F401  (first: it puts the repository root on sys.path)
from tests.support import services
from tests.support.operator import OperatorProcess

GAP = 5.0
"""Seconds between the end of one fault and the start of the next."""
KILL_BUDGET = 8.0
"""What a kill and the restart until /healthz answers take, for planning only (measured live)."""
LEAD = 3.0
"""Seconds of calm at the start of the window."""
KINDS = ("kill", "redis", "postgres", "apiserver")


@dataclass(frozen=True)
class Planned:
    at: float
    """Seconds after the window starts."""
    kind: str
    replica: str | None = None


@dataclass
class Fault:
    """One fault as it happened: ``start`` is when it began, ``end`` when the component was back."""

    kind: str
    start: datetime
    end: datetime
    replica: str | None = None
    detail: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"], data["end"] = self.start.isoformat(), self.end.isoformat()
        return data


def plan(
    seconds: float,
    *,
    rng: random.Random,
    replicas: list[str],
    pg_down: float,
    api_down: float,
    kill_every: float,
) -> list[Planned]:
    """Every kind at least once, kills every ~``kill_every`` s in between, in a seeded random order.

    Raises ValueError if the window cannot hold one fault of each kind with the gaps between.
    """
    outages = {"redis": 2.0, "postgres": pg_down, "apiserver": api_down + 6.0}
    busy = sum(d + GAP for d in outages.values())
    kills = max(1, int((seconds - LEAD - busy) // kill_every))
    slack = seconds - LEAD - busy - kills * (KILL_BUDGET + GAP)
    if slack < 0:
        raise ValueError(
            f"a {seconds:.0f} s window cannot hold every fault: it needs {seconds - slack:.0f} s "
            f"(--pg-down {pg_down:.0f}, --api-down {api_down:.0f}, gaps of {GAP:.0f} s)"
        )
    order = list(outages)
    rng.shuffle(order)
    # the outages go into random gaps between the kills, which keep a steady rhythm
    positions = sorted(rng.randrange(kills + 1) for _ in order)
    sequence: list[str] = []
    for gap in range(kills + 1):
        sequence += [order.pop(0) for p in positions if p == gap]
        if gap < kills:
            sequence.append("kill")
    weights = [rng.uniform(0.5, 1.5) for _ in sequence]
    planned: list[Planned] = []
    t = LEAD
    for kind, weight in zip(sequence, weights, strict=True):
        t += slack * weight / sum(weights)
        planned.append(Planned(round(t, 1), kind, rng.choice(replicas) if kind == "kill" else None))
        t += (KILL_BUDGET if kind == "kill" else outages[kind]) + GAP
    return planned


def _now() -> datetime:
    return datetime.now(UTC)


class Replicas:
    """The operator replicas: one live process per name, every incarnation kept for its log."""

    def __init__(self, plane: services.ControlPlane, env: dict[str, str], log_dir: Path) -> None:
        self.plane, self.env, self.log_dir = plane, env, log_dir
        self.live: dict[str, OperatorProcess] = {}
        self.all: list[OperatorProcess] = []

    def start(self, name: str) -> OperatorProcess:
        op = OperatorProcess(
            kubeconfig=str(self.plane.kubeconfig), env=self.env, replica=name, log_dir=self.log_dir
        )
        self.all.append(op)
        self.live[name] = op
        return op.start(timeout=90)

    def kill(self, name: str) -> None:
        self.live[name].kill()

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM each live replica; its exit code, or None if it had to be killed after 60 s."""
        codes: dict[str, int | None] = {}
        for name, op in self.live.items():
            try:
                codes[name] = op.stop(timeout=60)
            except subprocess.TimeoutExpired:
                codes[name] = None
        return codes

    def kill_all(self) -> None:
        for op in self.all:
            op.kill()

    def logs(self) -> list[Path]:
        return [op.log_path for op in self.all]


class ApiServer:
    """kube-apiserver of a ``hack/cluster.sh`` control plane, restarted with the flags it had.

    The flags are read from /proc of the running process, and the new pid is written back to
    ``kube-apiserver.pid`` so ``hack/cluster.sh down`` still stops it.
    """

    def __init__(self, plane: services.ControlPlane) -> None:
        self.dir = plane.dir
        self.pidfile = plane.dir / "kube-apiserver.pid"
        self.argv = Path(f"/proc/{self._pid()}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        server = next(
            line for line in (plane.dir / "kubeconfig").read_text().splitlines() if "server:" in line
        )
        self.url = server.split("server:", 1)[1].strip()
        pki = plane.dir / "pki"
        self.tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.tls.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.proc: subprocess.Popen[bytes] | None = None

    def _pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def stop(self, timeout: float = 3) -> None:
        """SIGTERM, and SIGKILL after ``timeout``: with watches open, a graceful stop takes ~20 s."""
        pid = self._pid()
        with contextlib.suppress(ProcessLookupError):  # already gone: what stop wants
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(pid):
                if self.proc is not None:
                    self.proc.poll()  # reap our own child, or it stays a zombie that looks alive
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    def start(self, timeout: float = 60) -> None:
        log = (self.dir / "kube-apiserver.log").open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        self.pidfile.write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kube-apiserver exited with {self.proc.returncode} on restart")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=self.tls, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kube-apiserver not ready within {timeout}s of its restart")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Targets:
    replicas: Replicas
    postgres: services.PostgresServer
    redis: services.RedisServer
    apiserver: ApiServer


def inflict(step: Planned, targets: Targets, *, pg_down: float, api_down: float) -> Fault:
    """One fault, start to recovery; a component that does not come back is recorded as an error."""
    start = _now()
    detail, error = "", None
    try:
        if step.kind == "kill":
            assert step.replica is not None
            targets.replicas.kill(step.replica)
            killed = _now()
            detail = f"killed at {killed.isoformat()}"
            for tries in range(3):
                try:
                    targets.replicas.start(step.replica)
                    break
                except RuntimeError as err:
                    error = f"restart {tries + 1} of {step.replica} failed: {str(err)[-1500:]}"
        elif step.kind == "redis":
            targets.redis.stop()
            targets.redis.start()
        elif step.kind == "postgres":
            targets.postgres.stop()
            time.sleep(max(0.0, pg_down - (_now() - start).total_seconds()))
            targets.postgres.start()
        elif step.kind == "apiserver":
            targets.apiserver.stop()
            time.sleep(max(0.0, api_down - (_now() - start).total_seconds()))
            targets.apiserver.start()
        else:
            raise ValueError(step.kind)
    except Exception as err:  # recorded and reported: the benchmark fails, the cleanup still runs
        error = f"{type(err).__name__}: {err}"
    return Fault(step.kind, start, _now(), step.replica, detail, error)


def run_plan(
    steps: list[Planned],
    targets: Targets,
    window_start: float,
    *,
    pg_down: float,
    api_down: float,
    on_fault: Callable[[int, Fault], None] = lambda index, fault: None,
) -> list[Fault]:
    """Inflict the plan in order, each at its time but never less than GAP after the last ended."""
    faults: list[Fault] = []
    ready = window_start
    for step in steps:
        at = max(window_start + step.at, ready + GAP)
        time.sleep(max(0.0, at - time.time()))
        fault = inflict(step, targets, pg_down=pg_down, api_down=api_down)
        faults.append(fault)
        print(
            f"fault {fault.kind}{' ' + fault.replica if fault.replica else ''}: "
            f"+{fault.start.timestamp() - window_start:.1f}s .. +{fault.end.timestamp() - window_start:.1f}s"
            + (f" ERROR {fault.error}" if fault.error else ""),
            flush=True,
        )
        on_fault(len(faults) - 1, fault)
        ready = fault.end.timestamp()
    return faults
