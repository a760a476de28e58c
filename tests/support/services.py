"""Private instances of the real components (PostgreSQL, Redis, the local control plane).

Shared by the test fixtures, the benchmarks and `make demo`. Each starts on free loopback ports
in its own temporary directory and never touches system services.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HACK = ROOT / "hack"


class ComponentError(RuntimeError):
    """A component could not start; the message carries its own error output."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, *, timeout: float, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ComponentError(f"{what} exited with code {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise ComponentError(f"{what} did not listen on port {port} within {timeout}s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _postgres_bin() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise ComponentError("PostgreSQL server binaries not found: run `make deps` (apt-get install postgresql)")


@dataclass(frozen=True)
class Postgres:
    url: str
    port: int
    datadir: Path
    server: PostgresServer | None = field(default=None, compare=False, repr=False)
    """The process itself, to stop and start again (the chaos benchmark's database outage)."""


class PostgresServer:
    """One postgres process on a fixed data dir and port: :meth:`stop` and :meth:`start` keep
    both, so clients see an outage and then the same database again."""

    def __init__(self, bindir: Path, data: Path, sock: Path, log: Path, port: int, prefix: list[str]) -> None:
        self.bindir, self.data, self.sock, self.log, self.port = bindir, data, sock, log, port
        self.prefix = prefix
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30) -> None:
        self.proc = subprocess.Popen(
            [
                *self.prefix,
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.sock),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        _wait_port(self.port, timeout=timeout, proc=self.proc, what="postgres", log=self.log)
        for _ in range(100):  # the port opens slightly before the server accepts logins
            ok = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "sundial"],
                capture_output=True,
                check=False,
            )
            if ok.returncode == 0:
                break
            time.sleep(0.1)

    def stop(self, *, timeout: float = 20) -> None:
        """Fast shutdown: open sessions are ended at once (a smart shutdown would wait for every
        pooled connection to close, which never happens)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w"],
            capture_output=True,
            check=False,
            timeout=timeout + 5,
        )
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """initdb into a temp dir and run postgres on a free port (as the `postgres` user when root)."""
    bindir = _postgres_bin()
    tmp = Path(tempfile.mkdtemp(prefix="sundial-pg-"))
    data, sock, log = tmp / "data", tmp / "sock", tmp / "postgres.log"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        os.chown(sock, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    init = subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "sundial", "--auth=trust", "-E", "UTF8"],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ComponentError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    server = PostgresServer(bindir, data, sock, log, port, prefix)
    try:
        server.start()
        created = subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "sundial", "sundial"],
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0:
            raise ComponentError(f"createdb failed: {created.stderr}\n{_tail(log)}")
        url = f"postgresql+psycopg://sundial@127.0.0.1:{port}/sundial"
        yield Postgres(url=url, port=port, datadir=data, server=server)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class RedisServer:
    """redis-server with persistence off on a fixed port: :meth:`stop` then :meth:`start` is a
    restart that comes back empty, as a Redis without persistence does."""

    def __init__(self, exe: str, tmp: Path, port: int) -> None:
        self.exe, self.tmp, self.port, self.log = exe, tmp, port, tmp / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 15) -> None:
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
                "--daemonize",
                "no",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        _wait_port(self.port, timeout=timeout, proc=self.proc, what="redis-server", log=self.log)

    def stop(self, *, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A running :class:`RedisServer` on a free port in its own temp dir, for the block."""
    exe = shutil.which("redis-server")
    if not exe:
        raise ComponentError("redis-server not found: run `make deps` (apt-get install redis-server)")
    tmp = Path(tempfile.mkdtemp(prefix="sundial-redis-"))
    server = RedisServer(exe, tmp, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def redis() -> Iterator[str]:
    """redis-server with persistence off on a free port; yields its URL."""
    with redis_server() as server:
        yield server.url


@dataclass(frozen=True)
class ControlPlane:
    kubeconfig: Path
    bindir: Path
    dir: Path

    @property
    def helm(self) -> Path:
        return self.bindir / "helm"

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


@contextlib.contextmanager
def control_plane(*, controller_manager: bool = True) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver (+ kube-controller-manager) via hack/cluster.sh in a temp dir."""
    tmp = Path(tempfile.mkdtemp(prefix="sundial-k8s-"))
    env = {**os.environ, "CONTROLLER_MANAGER": "1" if controller_manager else "0"}
    started = subprocess.run(
        [str(HACK / "cluster.sh"), "up", str(tmp)], capture_output=True, text=True, env=env, check=False
    )
    try:
        if started.returncode != 0:
            raise ComponentError(f"hack/cluster.sh up failed:\n{started.stderr[-4000:]}")
        yield ControlPlane(
            kubeconfig=tmp / "kubeconfig", bindir=Path((tmp / "bin-dir").read_text().strip()), dir=tmp
        )
    finally:
        subprocess.run([str(HACK / "cluster.sh"), "down", str(tmp)], capture_output=True, check=False)
