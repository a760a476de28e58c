"""``sql`` jobs without a server: parameters, result shaping, URLs, pools, whole attempts on SQLite."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
import yaml

from sundial import validation
from sundial.dburl import normalize_url
from sundial.jobs import sqlresult
from sundial.jobs.base import JobEnvironment
from sundial.jobs.context import Capture, JobContext, JobFailed, RunInfo
from sundial.jobs.sql import SqlJobType
from sundial.jobs.sqlpools import Pools, passwords, safe_url
from sundial.models.spec import CronConfigSpec, SqlJob
from sundial.settings import Settings

SLOT = datetime(2030, 1, 1, 3, 0, tzinfo=UTC)
RUN = RunInfo("run-1", "uid-1", "ns", "nightly", 1, SLOT, 2, "Schedule")


# ------------------------------------------------------------------------------------------ URLs
@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://u:p@db/app", "postgresql+psycopg"),
        ("postgresql://u:p@db/app", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@db/app", "postgresql+psycopg"),
        ("mysql://u:p@db/app", "mysql+pymysql"),
        ("mariadb://u:p@db/app", "mariadb+pymysql"),
        ("sqlite:////tmp/x.db", "sqlite"),
        ("  postgresql://u:p@db/app\n", "postgresql+psycopg"),
    ],
)
def test_bare_dialects_get_the_installed_driver(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


def test_a_logged_url_has_no_password() -> None:
    url = "postgresql://reporter:s%40cret@db:5432/app"
    assert safe_url(url) == "postgresql://reporter:***@db:5432/app"
    assert safe_url("not a url") == "(not a URL)"
    assert passwords(url) == {"s@cret", "s%40cret"}
    assert passwords("sqlite:///x.db") == set()


def test_a_string_that_is_no_url_raises_argument_error() -> None:
    with pytest.raises(sa.exc.ArgumentError):
        normalize_url("db.example.com:5432")


# ------------------------------------------------------------------------------------ parameters
def test_only_the_parameters_a_statement_names_are_bound() -> None:
    context = {"name": "x'); DROP TABLE victims; --", "limits": {"days": 30}, "tags": ["a"], "not-ident": 1}
    available = sqlresult.available_parameters(RUN, context)
    clause = sqlresult.statement("INSERT INTO t VALUES (:name, :limits, :scheduled_for, now()::date, '1:30')")
    params, missing = sqlresult.bind(sqlresult.parameter_names(clause), available)
    assert params == {"name": context["name"], "limits": '{"days": 30}', "scheduled_for": SLOT}
    assert missing == []
    assert available["tags"] == '["a"]' and "not-ident" not in available
    assert json.loads(available["context"]) == context
    assert (available["run_id"], available["attempt"]) == ("run-1", 2)


def test_run_parameters_win_over_context_keys_and_missing_ones_are_named() -> None:
    available = sqlresult.available_parameters(RUN, {"run_id": "spoofed"})
    assert available["run_id"] == "run-1"
    params, missing = sqlresult.bind({"run_id", "days"}, available)
    assert params == {"run_id": "run-1"} and missing == ["days"]
    assert sqlresult.parameter_names(sqlresult.statement("SELECT 1")) == set()


# -------------------------------------------------------------------------------------- results
def test_values_become_json() -> None:
    row = [datetime(2030, 1, 1, tzinfo=UTC), date(2030, 1, 2), Decimal("1.10"), b"\x00\xff", float("nan")]
    assert [sqlresult.jsonable(v) for v in row] == [
        "2030-01-01T00:00:00+00:00",
        "2030-01-02",
        "1.10",
        "AP8=",
        "nan",
    ]
    assert sqlresult.jsonable({"a": [Decimal(1)]}) == {"a": ["1"]}


def test_rows_are_cut_at_twenty_and_marked() -> None:
    shaped = sqlresult.shape_rows(["n"], ([i] for i in range(25)))
    assert shaped["rows"] == [[i] for i in range(20)] and shaped["truncated"] is True
    exact = sqlresult.shape_rows(["n"], ([i] for i in range(20)))
    assert len(exact["rows"]) == 20 and "truncated" not in exact


def test_rows_are_cut_at_64_kib_of_json() -> None:
    shaped = sqlresult.shape_rows(["blob"], (["x" * 10_000] for _ in range(20)))
    assert len(shaped["rows"]) == 6 and shaped["truncated"] is True
    assert len(json.dumps(shaped)) <= sqlresult.MAX_BYTES
    huge = sqlresult.shape_rows(["blob"], [["x" * 100_000]])
    assert huge == {"columns": ["blob"], "rows": [], "truncated": True}


# ---------------------------------------------------------------------------------------- pools
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_one_engine_per_url_disposed_when_idle(tmp_path: Path) -> None:
    clock = Clock()
    pools = Pools(idle_seconds=300, clock=clock)
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    first = await pools.acquire(a)
    second = await pools.acquire(a)
    other = await pools.acquire(b)
    assert first is second and first.engine is not other.engine and len(pools) == 2
    pools.release(first)
    pools.release(other)
    clock.now = 1000
    assert pools.sweep() == 1, "b is idle; a is still in use"
    pools.release(second)
    clock.now = 1200
    assert pools.sweep() == 0, "a has been idle for 200 s only"
    again = await pools.acquire(a)
    assert again is first, "reused, and its idle time reset"
    pools.release(again)
    clock.now = 1600
    third = await pools.acquire(b)  # acquiring sweeps: a goes
    assert len(pools) == 1 and third is not other
    pools.release(third)
    pools.close()
    assert len(pools) == 0


async def test_a_bad_url_is_not_pooled() -> None:
    pools = Pools()
    with pytest.raises(sa.exc.NoSuchModuleError):
        await pools.acquire("nosuchdb://x/y")
    assert len(pools) == 0


# ------------------------------------------------------------------------------ whole attempts
def context(url: str, *, timeout: int = 30, **values: Any) -> JobContext:
    secrets = {"db/url": url, **values.pop("secrets", {})}

    async def read_secret(name: str, key: str) -> str:
        if f"{name}/{key}" not in secrets:
            raise KeyError(f"secret ns/{name} has no key {key!r}")
        return secrets[f"{name}/{key}"]

    config = CronConfigSpec.model_validate(
        {"schedule": "@daily", "timeoutSeconds": timeout, "job": {"handler": {"name": "x"}}}
    )
    return JobContext(run=RUN, context=values, capture=Capture(), read_secret=read_secret, config=config)


def job(query: str | None = None, **fields: Any) -> SqlJob:
    body: dict[str, Any] = {"connectionSecretRef": {"name": "db", "key": "url"}, **fields}
    if query is not None:
        body["query"] = query
    return SqlJob.model_validate(body)


@pytest_asyncio.fixture(loop_scope="function")
async def sqlite(tmp_path: Path) -> AsyncIterator[tuple[SqlJobType, str]]:
    url = f"sqlite:///{tmp_path / 'target.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE victims (id INTEGER PRIMARY KEY, name TEXT, at TEXT)")
        conn.exec_driver_sql("INSERT INTO victims (name) VALUES ('a'), ('b'), ('c')")
    engine.dispose()
    job_type = SqlJobType()
    await job_type.open(JobEnvironment(settings=Settings(sql_allow_sqlite=True)))
    yield job_type, url
    await job_type.close()


async def test_rows_and_bound_context_on_sqlite(sqlite: tuple[SqlJobType, str]) -> None:
    job_type, url = sqlite
    hostile = "x'); DROP TABLE victims; --"
    inserted = await job_type.run(
        job("INSERT INTO victims (name, at) VALUES (:name, :scheduled_for)"), context(url, name=hostile)
    )
    assert inserted["rowsAffected"] == 1 and len(inserted["querySha256"]) == 64
    rows = await job_type.run(job("SELECT id, name FROM victims ORDER BY id", readOnly=True), context(url))
    assert rows["columns"] == ["id", "name"]
    assert rows["rows"] == [[1, "a"], [2, "b"], [3, "c"], [4, hostile]]
    assert len(job_type.pools) == 1


async def test_read_only_refuses_a_write_on_sqlite(sqlite: tuple[SqlJobType, str]) -> None:
    job_type, url = sqlite
    with pytest.raises(JobFailed, match="readonly database") as failed:
        await job_type.run(job("DELETE FROM victims", readOnly=True), context(url))
    assert str(failed.value).startswith("spec.job.sql.query: the database refused the statement: ")
    # the pragma did not stay on a pooled connection
    assert (await job_type.run(job("DELETE FROM victims"), context(url)))["rowsAffected"] == 3


async def test_user_errors_name_the_field(sqlite: tuple[SqlJobType, str]) -> None:
    job_type, url = sqlite
    cases = [
        (job("SELEC 1"), context(url), "spec.job.sql.query: the database refused the statement: "),
        (job("SELECT :days"), context(url), "spec.job.sql.query: no value for parameter(s) :days"),
        (
            job("SELECT 1"),
            context("postgres:/nope::"),
            "spec.job.sql.connectionSecretRef (Secret ns/db key url): not a usable database URL",
        ),
        (
            job(queryFrom={"secretKeyRef": {"name": "q", "key": "sql"}}),
            context(url),
            "spec.job.sql.queryFrom (Secret ns/q key sql): the Secret has no such key",
        ),
    ]
    for spec, ctx, message in cases:
        with pytest.raises(JobFailed) as failed:
            await job_type.run(spec, ctx)
        assert str(failed.value).startswith(message), str(failed.value)


async def test_cancel_interrupts_the_statement_and_frees_the_thread(sqlite: tuple[SqlJobType, str]) -> None:
    job_type, url = sqlite
    spin = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c"
    ctx = context(url)
    task = asyncio.create_task(job_type.run(job(spin), ctx))
    await asyncio.sleep(0.5)
    assert [t.name for t in threading.enumerate() if t.name.startswith("sundial-sql")]
    task.cancel()  # as the engine does: the task first, then the job type's hook
    await job_type.cancel(job(spin), ctx, "Timeout")
    with pytest.raises(asyncio.CancelledError):
        await task
    pool = next(iter(job_type.pools._pools.values()))
    for _ in range(100):
        if not pool.users:
            break
        await asyncio.sleep(0.05)
    assert pool.users == 0, "the worker thread finished and gave its connection back"
    assert (await job_type.run(job("SELECT count(*) FROM victims"), context(url)))["rows"] == [[3]]


def test_check_is_quiet_unless_something_is_off() -> None:
    job_type = SqlJobType()
    messages = lambda spec: [  # noqa: E731
        (f.path, f.message, f.warning) for f in job_type.check(spec, known_handlers=None)
    ]
    assert messages(job("DELETE FROM t WHERE at < now() - interval '30 days'")) == []
    assert messages(job("SELECT 1", readOnly=True)) == []
    assert messages(job("   ")) == [("spec.job.sql.query", "the statement is empty", False)]
    assert messages(job("delete from t", readOnly=True)) == [
        ("spec.job.sql.query", "readOnly is true: the database refuses this DELETE every run", True)
    ]
    [(path, message, warning)] = messages(job("SELECT dblink('postgresql://u:hunter2@db/x', 'q')"))
    assert path == "spec.job.sql.query" and "queryFrom.secretKeyRef" in message and warning


def test_the_example_manifest_is_valid_without_warnings() -> None:
    path = Path(__file__).parents[2] / "manifests/examples/sql-nightly-cleanup.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "CronConfig"]
    [result] = [validation.validate_object(d, known_handlers=None) for d in docs]
    assert isinstance(result, validation.Valid) and not result.warnings, result


async def test_sqlite_files_are_refused_unless_allowed(tmp_path: Path) -> None:
    """A CronConfig must not reach the operator's own disk unless the operator allows it."""
    job_type = SqlJobType()
    await job_type.open(JobEnvironment(settings=Settings()))
    try:
        with pytest.raises(JobFailed, match="SUNDIAL_SQL_ALLOW_SQLITE=true"):
            await job_type.run(job("SELECT 1"), context(f"sqlite:///{tmp_path / 'x.db'}"))
        assert not (tmp_path / "x.db").exists()
    finally:
        await job_type.close()
