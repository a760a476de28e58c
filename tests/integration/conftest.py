"""Fixtures for tests that drive the real operator against the real control plane."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.kube import Kubectl
from tests.support.services import ROOT, ControlPlane


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


@dataclass
class Receiver:
    """A local HTTP endpoint that records what each request carried."""

    url: str
    requests: list[dict[str, str]] = field(default_factory=list)
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def slots(self) -> list[str]:
        with self.lock:
            return [r["slot"] for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            with rec.lock:
                rec.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "body": body,
                        "slot": self.headers.get("X-Sundial-Slot", ""),
                        "run": self.headers.get("X-Sundial-Run", ""),
                        "authorization": self.headers.get("Authorization", ""),
                    }
                )
            self.send_response(rec.status)
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
