"""``sql`` jobs end to end: the real operator runs statements against a real PostgreSQL database.

The target database is never the run history: each test gets a fresh database on the session's
server, owned by a role of its own whose password is in the URL (the server trusts local logins, so
the password only has to stay out of everything recorded). Cancellation is checked on the server:
``pg_stat_activity`` must show no ``pg_sleep`` left running once a run is over.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from sundial.jobs.base import JobEnvironment
from sundial.jobs.context import Capture, JobContext, RunInfo
from sundial.jobs.sql import SqlJobType
from sundial.models.spec import SqlJob
from sundial.settings import Settings
from sundial.store.records import RunRecord
from tests.integration.conftest import StartOperator, runs_of, sundial_env
from tests.integration.test_redaction import assert_nowhere
from tests.support.kube import Kubectl, cronconfig, wait_until
from tests.support.services import free_port

pytestmark = pytest.mark.k8s

HOSTILE = "x'); DROP TABLE victims; --"


@dataclass
class Target:
    """A database of its own for the statements, and a superuser engine to look at it."""

    url: str
    """What goes into the Secret: ``postgresql://role:password@host:port/db``."""
    password: str
    name: str
    admin: sa.Engine

    def sql(self, statement: str, **params: Any) -> list[Any]:
        with self.admin.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result) if result.returns_rows else []

    def sleeping(self) -> int:
        """Backends of this database running ``pg_sleep`` now (other than the one asking)."""
        rows = self.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND state = 'active' "
            "AND query ILIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
            db=self.name,
        )
        return int(rows[0][0])


@pytest.fixture
def target(postgres_url: str) -> Iterator[Target]:
    suffix = uuid.uuid4().hex[:10]
    name, role, password = f"sqljob_{suffix}", f"sqljob_{suffix}", f"pw-{uuid.uuid4().hex}"
    server = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"))
        conn.execute(sa.text(f'CREATE DATABASE "{name}" OWNER "{role}"'))
    base = sa.engine.make_url(postgres_url)
    admin = sa.create_engine(base.set(database=name))
    url = base.set(drivername="postgresql", username=role, password=password, database=name)
    t = Target(url=url.render_as_string(hide_password=False), password=password, name=name, admin=admin)
    t.sql("CREATE TABLE victims (id serial PRIMARY KEY, name text, at timestamptz)")
    t.sql("CREATE TABLE fruits (id int PRIMARY KEY, name text, price numeric)")
    t.sql("INSERT INTO fruits VALUES (1, 'apple', 1.50), (2, 'pear', 2.25)")
    t.sql("CREATE TABLE old_events (id int)")
    for table in ("victims", "fruits", "old_events"):
        t.sql(f'ALTER TABLE {table} OWNER TO "{role}"')
    t.sql("INSERT INTO old_events SELECT generate_series(1, 7)")
    t.sql("CREATE TABLE payroll (salary int)")  # owned by the superuser: the role may not read it
    yield t
    admin.dispose()
    with server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
    server.dispose()


def secret(kubectl: Kubectl, namespace: str, name: str, **data: str) -> None:
    literals = [f"--from-literal={k}={v}" for k, v in data.items()]
    kubectl.run("create", "secret", "generic", name, "-n", namespace, *literals)


def soon(seconds: int = 3) -> str:
    at = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
    return at.isoformat().replace("+00:00", "Z")


def sql_job(query: str | None = None, *, ref: str = "db", key: str = "url", **fields: Any) -> dict[str, Any]:
    job: dict[str, Any] = {"connectionSecretRef": {"name": ref, "key": key}, **fields}
    if query is not None:
        job["query"] = query
    return {"sql": job}


def finished(db: str, namespace: str, name: str, timeout: float = 20) -> RunRecord:
    return wait_until(
        lambda: next((r for r in runs_of(db, namespace, name) if r.finished_at), None),
        timeout=timeout,
        what=f"a finished run of {name}",
    )


def test_rows_deletes_bound_context_and_read_only(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator, target: Target
) -> None:
    """A SELECT records its columns and rows (numerics as strings, ``now()::date`` works); a DELETE
    records rows affected; a hostile context value bound as ``:name`` lands verbatim and the table
    survives; ``readOnly`` makes the database itself refuse a write."""
    db, redis = pg_redis
    secret(kubectl, namespace, "db", url=target.url)
    op = operator_for(sundial_env(db, redis, namespace))
    at = soon()
    specs = {
        "rows": sql_job(
            "SELECT id, name, price, now()::date = current_date AS today FROM fruits ORDER BY id",
            readOnly=True,
        ),
        "cleanup": sql_job("DELETE FROM old_events WHERE id <= :keep", readOnly=False),
        "hostile": sql_job("INSERT INTO victims (name, at) VALUES (:name, :scheduled_for)"),
        "refused": sql_job("DELETE FROM fruits", readOnly=True),
    }
    context = {"keep": 5, "name": HOSTILE}
    for name, job in specs.items():
        kubectl.apply(cronconfig(name, namespace, runAt=at, context=context, job=job))
    rows, cleanup, hostile, refused = (finished(db, namespace, name) for name in specs)

    assert (rows.status, rows.error) == ("Succeeded", None)
    assert rows.result["columns"] == ["id", "name", "price", "today"]
    assert rows.result["rows"] == [[1, "apple", "1.50", True], [2, "pear", "2.25", True]]
    assert rows.result["rowsAffected"] == 2 and len(rows.result["querySha256"]) == 64
    assert "truncated" not in rows.result

    assert (cleanup.status, cleanup.result["rowsAffected"]) == ("Succeeded", 5)
    assert "columns" not in cleanup.result
    assert target.sql("SELECT count(*) FROM old_events") == [(2,)]

    assert hostile.status == "Succeeded", hostile.error
    assert target.sql("SELECT name, at FROM victims") == [(HOSTILE, hostile.scheduled_for)]

    assert (refused.status, refused.reason) == ("Failed", "JobFailed")
    assert refused.error == (
        "spec.job.sql.query: the database refused the statement: "
        "cannot execute DELETE in a read-only transaction (SQLSTATE 25006)"
    )
    assert target.sql("SELECT count(*) FROM fruits") == [(2,)]
    assert "Traceback" not in op.logs()


def test_user_errors_fail_the_run_naming_the_field(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator, target: Target
) -> None:
    """A missing Secret or key, a bad URL, an unreachable database, a syntax error and a missing
    grant each fail their run with the field, the Secret and the database's own message; the
    operator goes on and logs no traceback for any of them."""
    db, redis = pg_redis
    closed = f"postgresql://nobody:pw-unreachable-{uuid.uuid4().hex}@127.0.0.1:{free_port()}/x"
    secret(kubectl, namespace, "db", url=target.url, bad="db.example.com:5432", down=closed)
    op = operator_for(sundial_env(db, redis, namespace))
    at = soon()
    ns = namespace
    cases = {
        "no-secret": (
            sql_job("SELECT 1", ref="nosuch"),
            f"spec.job.sql.connectionSecretRef (Secret {ns}/nosuch key url): the Secret does not exist",
        ),
        "no-key": (
            sql_job("SELECT 1", key="nokey"),
            f"spec.job.sql.connectionSecretRef (Secret {ns}/db key nokey): the Secret has no such key",
        ),
        "bad-url": (
            sql_job("SELECT 1", key="bad"),
            f"spec.job.sql.connectionSecretRef (Secret {ns}/db key bad): not a usable database URL: ",
        ),
        "unreachable": (
            sql_job("SELECT 1", key="down"),
            f"spec.job.sql.connectionSecretRef (Secret {ns}/db key down): cannot connect: connection failed",
        ),
        "syntax": (
            sql_job("SELEC 1"),
            'spec.job.sql.query: the database refused the statement: syntax error at or near "SELEC" '
            "(SQLSTATE 42601)",
        ),
        "grant": (
            sql_job("SELECT sum(salary) FROM payroll"),
            "spec.job.sql.query: the database refused the statement: permission denied for table payroll "
            "(SQLSTATE 42501)",
        ),
    }
    for name, (job, _) in cases.items():
        kubectl.apply(cronconfig(name, namespace, runAt=at, job=job))
    for name, (_, message) in cases.items():
        run = finished(db, namespace, name)
        assert (run.status, run.reason) == ("Failed", "JobFailed"), (name, run)
        assert (run.error or "").startswith(message), (name, run.error)
        assert "\n" not in (run.error or "")
    logs = op.logs()
    assert "Traceback" not in logs
    assert target.password not in logs and closed.split(":")[2].split("@")[0] not in logs
    assert op.proc is not None and op.proc.poll() is None, "the operator keeps running"


def test_timeout_cancels_the_statement_on_the_server(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator, target: Target
) -> None:
    """``timeoutSeconds: 2`` with ``pg_sleep(60)``: the run ends ``TimedOut`` and the backend stops
    sleeping within seconds (``statement_timeout`` and the cancel both act on the server)."""
    db, redis = pg_redis
    secret(kubectl, namespace, "db", url=target.url)
    operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig("slow", namespace, runAt=soon(), timeoutSeconds=2, job=sql_job("SELECT pg_sleep(60)"))
    )
    wait_until(lambda: target.sleeping() == 1, what="the statement running on the server")
    run = finished(db, namespace, "slow")
    assert run.status == "TimedOut", run
    assert run.duration_ms is not None and run.duration_ms < 4000
    wait_until(lambda: target.sleeping() == 0, timeout=3, what="no pg_sleep left on the server")


def test_replace_and_shutdown_cancel_the_statement_on_the_server(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator, target: Target
) -> None:
    """``Replace`` cancels the running statement on the server, not only its task: with a new slot
    every 3 s and ``pg_sleep(60)`` at most one backend sleeps once a replacement settled; stopping
    the operator (grace 1 s) leaves none."""
    db, redis = pg_redis
    secret(kubectl, namespace, "db", url=target.url)
    op = operator_for(sundial_env(db, redis, namespace, SUNDIAL_SHUTDOWN_GRACE_SECONDS="1"))
    kubectl.apply(
        cronconfig(
            "replaced",
            namespace,
            schedule="*/3 * * * * *",
            concurrencyPolicy="Replace",
            timeoutSeconds=120,
            job=sql_job("SELECT pg_sleep(60)"),
        )
    )
    wait_until(
        lambda: sum(r.reason == "Replaced" for r in runs_of(db, namespace, "replaced")) >= 2,
        timeout=15,
        what="two replaced runs",
    )
    wait_until(lambda: target.sleeping() == 1, timeout=3, what="only the current statement sleeping")
    assert op.stop() == 0
    wait_until(lambda: target.sleeping() == 0, timeout=5, what="no pg_sleep after shutdown")
    cancelled = [r for r in runs_of(db, namespace, "replaced") if r.status == "Cancelled"]
    assert {r.reason for r in cancelled} <= {"Replaced", "OperatorShutdown"}


def test_query_from_and_the_password_are_never_recorded(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator, target: Target
) -> None:
    """A statement from ``queryFrom`` and the URL's password appear nowhere sundial records (the
    history database, the CronConfig and its status, Events, the operator log), even when the
    statement fails; the result names the statement by ``querySha256``."""
    db, redis = pg_redis
    marker = f"marker-{uuid.uuid4().hex}"
    ok = f"SELECT count(*) AS n FROM fruits WHERE name <> '{marker}'"
    broken = f"SELECT nosuchcolumn FROM fruits WHERE name = '{marker}'"
    secret(kubectl, namespace, "db", url=target.url)
    secret(kubectl, namespace, "queries", ok=ok, broken=broken)
    op = operator_for(sundial_env(db, redis, namespace))
    at = soon()
    for name in ("ok", "broken"):
        job = sql_job(queryFrom={"secretKeyRef": {"name": "queries", "key": name}})
        kubectl.apply(cronconfig(name, namespace, runAt=at, job=job))
    good, bad = finished(db, namespace, "ok"), finished(db, namespace, "broken")
    assert good.status == "Succeeded" and good.result["rows"] == [[2]]
    assert good.result["querySha256"] == hashlib.sha256(ok.encode()).hexdigest()
    assert bad.status == "Failed" and bad.result["querySha256"] == hashlib.sha256(broken.encode()).hexdigest()
    assert (bad.error or "").startswith(
        f"spec.job.sql.queryFrom (Secret {namespace}/queries key broken): "
        'the database refused the statement: column "nosuchcolumn" does not exist'
    )
    wait_until(lambda: kubectl.status("broken", namespace).get("lastRun"), what="the status written")
    for value in (marker, target.password, target.url):
        assert_nowhere(value, db=db, kubectl=kubectl, namespace=namespace, op=op)


def _context(run_id: str, url: str) -> JobContext:
    async def read_secret(name: str, key: str) -> str:
        return url

    run = RunInfo(run_id, f"uid-{run_id[-2:]}", "ns", "c", 1, datetime.now(UTC), 1, "Schedule")
    return JobContext(run=run, context={"n": run_id}, capture=Capture(), read_secret=read_secret)


async def test_many_cronconfigs_on_one_database_share_one_small_pool(target: Target) -> None:
    """100 attempts of 25 CronConfigs at once on one URL use one engine and at most 5 connections."""
    job_type = SqlJobType()
    await job_type.open(JobEnvironment(settings=Settings()))
    spec = SqlJob.model_validate(
        {
            "connectionSecretRef": {"name": "db", "key": "url"},
            "query": "SELECT :n AS n, pg_sleep(0.05), (SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND backend_type = 'client backend') AS backends",
        }
    )
    try:
        results = await asyncio.gather(
            *(job_type.run(spec, _context(f"run-{i:03d}-{i % 25:02d}", target.url)) for i in range(100))
        )
        assert [r["rows"][0][0] for r in results] == [f"run-{i:03d}-{i % 25:02d}" for i in range(100)]
        assert len(job_type.pools) == 1 and len(job_type.pools.engines()) == 1
        assert max(r["rows"][0][2] for r in results) <= 5 + 1  # the pool, and the admin engine here
        pool = job_type.pools.engines()[0].pool
        assert pool.checkedout() == 0 and pool.size() == 2  # type: ignore[attr-defined]
    finally:
        await job_type.close()
