"""Fixtures for tests that drive the real operator against the real control plane."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from sundial.store.records import RunRecord
from sundial.store.store import RunStore
from tests.support.kube import Kubectl
from tests.support.operator import OperatorProcess
from tests.support.services import ROOT, ControlPlane

StartOperator = Callable[..., OperatorProcess]
"""``operator_for(env, replica="replica-a")``: start one more `sundial run` replica for this test."""


def sundial_env(db: str, redis: str | None, namespace: str, **extra: str) -> dict[str, str]:
    """The operator environment of the end-to-end tests: one namespace, a 3 s lease TTL."""
    env = {"SUNDIAL_DATABASE_URL": db, "SUNDIAL_NAMESPACES": namespace, "SUNDIAL_LEASE_TTL_SECONDS": "3"}
    if redis:
        env["SUNDIAL_REDIS_URL"] = redis
    env.update(extra)
    return env


def runs_of(db: str, namespace: str, name: str, limit: int = 10_000) -> list[RunRecord]:
    """The run history of one CronConfig, newest slot (and attempt) first."""
    with RunStore(db) as store:
        return store.runs(namespace, name, limit=limit)


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    k = Kubectl(str(control_plane.kubeconfig))
    k.run("apply", "-f", str(ROOT / "crds"))
    k.run("wait", "--for", "condition=established", "--timeout=30s", "crd/cronconfigs.sundial.io")
    return k


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    ns = f"t-{uuid.uuid4().hex[:10]}"
    kubectl.run("create", "namespace", ns)
    yield ns
    kubectl.run("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
def fresh_postgres(postgres_url: str) -> Iterator[str]:
    """A new empty database on the session's PostgreSQL server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_redis(fresh_postgres: str, redis_url: str) -> tuple[str, str]:
    return fresh_postgres, redis_url


@pytest.fixture
def operator_for(control_plane: ControlPlane, tmp_path: Path) -> Iterator[StartOperator]:
    """Start operator replicas; at teardown each must exit 0 on SIGTERM, unless the test killed it."""
    started: list[OperatorProcess] = []

    def start(env: dict[str, str], replica: str = "replica-a") -> OperatorProcess:
        from sundial.store import migrate

        migrate.upgrade(env["SUNDIAL_DATABASE_URL"])
        op = OperatorProcess(
            kubeconfig=str(control_plane.kubeconfig), env=env, replica=replica, log_dir=tmp_path
        )
        started.append(op)
        return op.start()

    yield start
    unclean: list[str] = []
    for op in started:
        if op.killed:  # SIGKILLed on purpose by the test
            continue
        try:
            code = op.stop()
        except subprocess.TimeoutExpired:
            unclean.append(f"{op.replica}: still running 40 s after SIGTERM (killed)")
            continue
        if code != 0:
            unclean.append(f"{op.replica}: exit code {code} after SIGTERM\n{op.logs()[-3000:]}")
    assert not unclean, "operators did not stop cleanly:\n" + "\n".join(unclean)


@dataclass
class Receiver:
    """A local HTTP endpoint that records what each request carried.

    It answers ``status`` with ``reply(request)`` as the body (default ``{"ok": true}``), or, if
    ``raw`` is set, writes those bytes as the whole response (to send a malformed one).
    """

    url: str
    requests: list[dict[str, str]] = field(default_factory=list)
    status: int = 200
    reply: Callable[[dict[str, str]], bytes] | None = None
    raw: Callable[[dict[str, str]], bytes] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def slots(self) -> list[str]:
        with self.lock:
            return [r["slot"] for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver("127.0.0.1") as rec:
        yield rec


@contextlib.contextmanager
def serve_receiver(host: str) -> Iterator[Receiver]:
    """A :class:`Receiver` listening on ``host`` (a free port), for the duration of the block."""
    rec = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            request = {
                "method": self.command,
                "path": self.path,
                "body": body,
                "slot": self.headers.get("X-Sundial-Slot", ""),
                "run": self.headers.get("X-Sundial-Run", ""),
                "authorization": self.headers.get("Authorization", ""),
            }
            with rec.lock:
                rec.requests.append(request)
                status, reply, raw = rec.status, rec.reply, rec.raw
            if raw is not None:
                self.wfile.write(raw(request))
                self.close_connection = True
                return
            self.send_response(status)
            self.end_headers()
            self.wfile.write(reply(request) if reply else b'{"ok": true}')

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    rec.url = f"http://{host}:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
