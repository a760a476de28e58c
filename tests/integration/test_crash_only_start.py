"""Crash-only start-up of the real `sundial run`: a replica is whole or gone.

A start-up that fails exits non-zero within a bound, with one line naming what failed (no
traceback for faults of the environment), and leaves no heartbeat in Redis: a half-started replica
would be counted in the others' sharding and serve nothing. A failure of kopf itself after the
engine started ends the process too, with the heartbeat given back.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sundial.leases import keys
from sundial.store import migrate
from tests.integration.conftest import sundial_env
from tests.support.kube import wait_until
from tests.support.operator import OperatorProcess
from tests.support.services import ControlPlane, free_port

pytestmark = pytest.mark.k8s
EXIT_WITHIN = 30.0


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def exit_code(op: OperatorProcess, *, within: float = EXIT_WITHIN) -> int:
    """Run ``op`` until it exits on its own, which it must within ``within`` seconds."""
    with op.log_path.open("ab") as log:
        op.proc = subprocess.Popen(
            op.command, env=op.env, stdout=log, stderr=subprocess.STDOUT, cwd=str(op.log_path.parent)
        )
    try:
        return op.proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        op.kill()
        pytest.fail(f"still running {within:.0f}s after start:\n{op.logs()[-3000:]}")


def failure_line(op: OperatorProcess) -> str:
    """The one line that says why the start-up failed; no traceback anywhere."""
    logs = op.logs()
    lines = [line for line in logs.splitlines() if "start-up failed" in line]
    assert len(lines) == 1, f"expected one start-up failure line:\n{logs[-3000:]}"
    assert "Traceback" not in logs, logs[-3000:]
    return lines[0]


def assert_no_heartbeat(redis_url: str, replica: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.get(keys.replica(replica)) is None, "the failed replica left its heartbeat"
        assert client.zscore(keys.members(), replica) is None, "the failed replica is still a member"
    finally:
        client.close()


def operator(plane: ControlPlane, log_dir: Path, env: dict[str, str], replica: str) -> OperatorProcess:
    return OperatorProcess(kubeconfig=str(plane.kubeconfig), env=env, replica=replica, log_dir=log_dir)


def test_taken_metrics_port_exits_without_a_heartbeat(
    control_plane: ControlPlane,
    pg_redis: tuple[str, str],
    namespace: str,
    tmp_path: Path,
    taken_port: int,
) -> None:
    db, redis_url = pg_redis
    migrate.upgrade(db)
    env = sundial_env(db, redis_url, namespace)
    op = operator(control_plane, tmp_path, {**env, "SUNDIAL_HTTP_PORT": str(taken_port)}, "port-taken")
    assert exit_code(op) == 1
    line = failure_line(op)
    assert f"127.0.0.1:{taken_port}" in line and "address already in use" in line, line
    assert_no_heartbeat(redis_url, "port-taken")

    # The same replica on a free port heartbeats under the keys looked at above (not a vacuous check).
    healthy = operator(control_plane, tmp_path, env, "port-taken").start()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        wait_until(lambda: client.get(keys.replica("port-taken")), what="the heartbeat")
        assert client.zscore(keys.members(), "port-taken") is not None
    finally:
        client.close()
        assert healthy.stop() == 0
    assert_no_heartbeat(redis_url, "port-taken")


@pytest.mark.parametrize("database", ["without-schema", "unreachable"])
def test_database_fault_exits_with_one_line(
    control_plane: ControlPlane,
    fresh_postgres: str,
    redis_url: str,
    namespace: str,
    tmp_path: Path,
    database: str,
) -> None:
    db = fresh_postgres  # created, never migrated
    if database == "unreachable":
        db = f"postgresql+psycopg://sundial@127.0.0.1:{free_port()}/sundial"
    op = operator(control_plane, tmp_path, sundial_env(db, redis_url, namespace), f"db-{database}")
    assert exit_code(op) == 1
    line = failure_line(op)
    assert "opening the run history database" in line, line
    expected = "run `sundial migrate`" if database == "without-schema" else "Connection refused"
    assert expected in line, line
    assert_no_heartbeat(redis_url, f"db-{database}")


def test_kopf_failing_after_the_engine_started_ends_the_process(
    control_plane: ControlPlane,
    pg_redis: tuple[str, str],
    namespace: str,
    tmp_path: Path,
    taken_port: int,
) -> None:
    """kopf binds the webhook's port only after the start-up handlers: the engine is running then."""
    db, redis_url = pg_redis
    migrate.upgrade(db)
    env = sundial_env(
        db,
        redis_url,
        namespace,
        SUNDIAL_WEBHOOK_ENABLED="true",
        SUNDIAL_WEBHOOK_ADDR="127.0.0.1",
        SUNDIAL_WEBHOOK_PORT=str(taken_port),
    )
    op = operator(control_plane, tmp_path, env, "kopf-fails")
    assert exit_code(op, within=60) == 1
    logs = op.logs()
    assert "sundial replica kopf-fails started" in logs, logs[-3000:]
    assert "the operator stopped on an error" in logs, logs[-3000:]
    assert_no_heartbeat(redis_url, "kopf-fails")
