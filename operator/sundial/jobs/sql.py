"""``sql`` jobs: one statement in one transaction per attempt, against a database named by a Secret.

The statement runs in a worker thread on a pooled synchronous engine (:mod:`sundial.jobs.sqlpools`)
so that :meth:`SqlJobType.cancel` can stop it *on the server* (``Replace``, timeout, shutdown):
psycopg's ``cancel_safe()``, SQLite's ``interrupt()``, MySQL's ``KILL QUERY``. Cancelling only the
client would leave the query running, holding locks, after the run is recorded as over. A
connection whose statement was cancelled is invalidated, never handed to the next attempt.

The connection URL and a ``queryFrom`` statement are read through ``ctx.secret``, so the engine
redacts them from everything it records; the result names the statement by its SHA-256 instead.
Everything the user can get wrong (a URL, a Secret, the network, the SQL, a grant) ends the attempt
with :class:`JobFailed` naming the field and quoting the database; none of it is an operator fault.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import re
import threading
import time
from collections.abc import Collection, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sundial.jobs import sqlresult
from sundial.jobs.base import Finding, JobEnvironment, JobType
from sundial.jobs.context import JobContext, JobFailed, JobTimedOut
from sundial.jobs.sqlpools import Pools, passwords
from sundial.models.spec import JobKind, SecretKeyRef, SqlJob

log = logging.getLogger("sundial.jobs.sql")

MAX_THREADS = 64
_WRITES = re.compile(r"^\s*(insert|update|delete|merge|truncate|drop|alter|create|grant|revoke)\b", re.I)
_INLINE_CREDENTIALS = re.compile(r"\w+://[^/\s:@'\"]+:[^@\s'\"]+@|\bpassword\s*(=|')", re.I)
_TIMEOUT_CODES = {"57014", 3024, 1969}
"""PostgreSQL ``statement_timeout``, MySQL ``max_execution_time``, MariaDB ``max_statement_time``."""


def first_line(err: BaseException) -> str:
    """The database's own message (the DBAPI error, not SQLAlchemy's wrapping), one line."""
    orig = getattr(err, "orig", None) or err
    lines = str(orig).strip().splitlines()
    text = lines[0][:500] if lines else type(orig).__name__
    code = getattr(orig, "sqlstate", None)
    return f"{text} (SQLSTATE {code})" if code else text


def _error_code(err: sa.exc.DBAPIError) -> object:
    orig = err.orig
    code = getattr(orig, "sqlstate", None)
    if code is None and orig is not None and orig.args:
        code = orig.args[0]
    return code


def prelude(backend: str, mariadb: bool, read_only: bool, timeout_ms: int | None) -> list[str]:
    """Statements that make the attempt's transaction read-only and bounded, per database.

    SQLite has no statement timeout: the engine's timer and ``interrupt()`` stop it.
    MySQL's ``max_execution_time`` only bounds SELECTs; MariaDB's ``max_statement_time`` all.
    """
    out: list[str] = []
    if backend == "postgresql":
        if read_only:
            out.append("SET TRANSACTION READ ONLY")
        if timeout_ms:
            out.append(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
    elif backend in ("mysql", "mariadb"):
        if timeout_ms and mariadb:
            out.append(f"SET SESSION max_statement_time = {timeout_ms / 1000:.3f}")
        elif timeout_ms:
            out.append(f"SET SESSION max_execution_time = {int(timeout_ms)}")
        if read_only:
            out.append("START TRANSACTION READ ONLY")
    elif backend == "sqlite" and read_only:
        out.append("PRAGMA query_only = ON")
    return out


class Statement:
    """One attempt's statement: its connection while it runs, cancellable from another thread.

    The lock makes cancel and detach exclusive, so a cancel never reaches a connection that was
    already given back to the pool (and to another attempt).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.cancelled = False
        self.dbapi: Any = None

    def attach(self, dbapi: Any) -> bool:
        with self.lock:
            self.dbapi = None if self.cancelled else dbapi
            return not self.cancelled

    def detach(self) -> None:
        with self.lock:
            self.dbapi = None

    def cancel(self) -> None:
        """Stop the statement on the server; blocking (a network round trip): call it in a thread."""
        with self.lock:
            if self.cancelled:
                return
            self.cancelled = True
            dbapi = self.dbapi
            if dbapi is None:
                return
            try:
                _cancel_on_server(self.engine, dbapi)
            except Exception as err:
                log.warning("sql: cancelling a statement on the server failed: %s", first_line(err))


def _cancel_on_server(engine: Engine, dbapi: Any) -> None:
    if hasattr(dbapi, "cancel_safe"):  # psycopg 3
        dbapi.cancel_safe(timeout=5.0)
    elif hasattr(dbapi, "interrupt"):  # sqlite3
        dbapi.interrupt()
    elif hasattr(dbapi, "thread_id"):  # PyMySQL: KILL QUERY from a connection outside the pool
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        other = engine.dialect.connect(*cargs, **cparams)
        try:
            other.cursor().execute(f"KILL QUERY {int(dbapi.thread_id())}")
        finally:
            other.close()


def execute(
    engine: Engine,
    clause: sa.TextClause,
    params: dict[str, Any],
    stmt: Statement,
    *,
    read_only: bool,
    timeout_ms: int | None,
    where: str,
    conn_where: str,
) -> dict[str, Any]:
    """The worker thread's part: connect, run the statement in one transaction, shape the result."""
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as err:
        raise JobFailed(f"{conn_where}: cannot connect: {first_line(err)}") from None
    with conn:
        if not stmt.attach(conn.connection.dbapi_connection):
            conn.invalidate()
            raise JobFailed("cancelled before the statement started")
        dialect = conn.dialect
        first = prelude(dialect.name, bool(getattr(dialect, "is_mariadb", False)), read_only, timeout_ms)
        try:
            with conn.begin():
                for line in first:
                    conn.exec_driver_sql(line)
                result = conn.execute(clause, params)
                out: dict[str, Any] = {"rowsAffected": result.rowcount}
                if result.returns_rows:
                    out.update(sqlresult.shape_rows(list(result.keys()), result))
                    result.close()
            return out
        except sa.exc.DBAPIError as err:
            if _error_code(err) in _TIMEOUT_CODES and not stmt.cancelled:
                raise JobTimedOut(f"{where}: cancelled by the database: {first_line(err)}") from None
            raise JobFailed(f"{where}: the database refused the statement: {first_line(err)}") from None
        finally:
            stmt.detach()
            # a cancel may land late; a query_only connection keeps the pragma: neither is reused
            if stmt.cancelled or (read_only and dialect.name == "sqlite"):
                conn.invalidate()


class SqlJobType(JobType[SqlJob]):
    """Pools per database URL shared by every CronConfig; one worker thread per running statement."""

    kind = JobKind.SQL
    model = SqlJob

    def __init__(self, pools: Pools | None = None) -> None:
        self.pools = pools or Pools()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: dict[str, Statement] = {}
        self._allow_sqlite = False

    async def open(self, env: JobEnvironment) -> None:
        self._allow_sqlite = env.settings.sql_allow_sqlite
        self._executor = concurrent.futures.ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="sundial-sql")

    async def close(self) -> None:
        for stmt in list(self._running.values()):
            await asyncio.to_thread(stmt.cancel)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.pools.close()

    async def run(self, spec: SqlJob, ctx: JobContext) -> dict[str, Any]:
        if self._executor is None:
            raise RuntimeError("the sql job type was not opened")
        conn_ref = spec.connection_secret_ref
        conn_where = _where(ctx, "spec.job.sql.connectionSecretRef", conn_ref)
        url = await _secret(ctx, conn_ref, conn_where)
        ctx.secrets_seen.update(passwords(url))
        if spec.query_from is not None:
            where = _where(ctx, "spec.job.sql.queryFrom", spec.query_from.secret_key_ref)
            sql = await _secret(ctx, spec.query_from.secret_key_ref, where)
        else:
            where, sql = "spec.job.sql.query", spec.query or ""
        if not sql.strip():
            raise JobFailed(f"{where}: the statement is empty")
        digest = hashlib.sha256(sql.encode()).hexdigest()
        clause = sqlresult.statement(sql)
        available = sqlresult.available_parameters(ctx.run, ctx.context)
        params, missing = sqlresult.bind(sqlresult.parameter_names(clause), available)
        if missing:
            raise JobFailed(
                f"{where}: no value for parameter(s) {', '.join(':' + n for n in missing)}: a statement may "
                f"name {', '.join(':' + n for n in sqlresult.RUN_PARAMETERS)} and the keys of spec.context",
                result={"querySha256": digest},
            )
        if not self._allow_sqlite and url.strip().lower().startswith("sqlite"):
            raise JobFailed(
                f"{conn_where}: SQLite files are on the operator's own disk: refused unless the "
                "operator runs with SUNDIAL_SQL_ALLOW_SQLITE=true"
            )
        try:
            pool = await self.pools.acquire(url)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as err:
            raise JobFailed(f"{conn_where}: not a usable database URL: {first_line(err)}") from None
        stmt = Statement(pool.engine)
        timeout_ms = ctx.config.timeout_seconds * 1000 if ctx.config is not None else None
        started = time.monotonic()
        try:
            future = self._executor.submit(
                execute,
                pool.engine,
                clause,
                params,
                stmt,
                read_only=spec.read_only,
                timeout_ms=timeout_ms,
                where=where,
                conn_where=conn_where,
            )
        except BaseException:
            self.pools.release(pool)
            raise
        # the slot is given back when the thread is done, not when this task is
        future.add_done_callback(lambda _: self.pools.release(pool))
        self._running[ctx.run.id] = stmt
        try:
            result = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            threading.Thread(target=stmt.cancel, name="sundial-sql-cancel", daemon=True).start()
            raise
        except JobFailed as err:
            err.result = {"querySha256": digest, "durationMs": _ms(started)}
            raise
        finally:
            self._running.pop(ctx.run.id, None)
        result.update(querySha256=digest, durationMs=_ms(started))
        ctx.capture.info(f"{pool.label}: {result['rowsAffected']} rows affected", querySha256=digest)
        return result

    async def cancel(self, spec: SqlJob, ctx: JobContext, reason: str) -> None:
        stmt = self._running.get(ctx.run.id)
        if stmt is not None:
            await asyncio.to_thread(stmt.cancel)

    def check(self, spec: SqlJob, *, known_handlers: Collection[str] | None) -> Iterable[Finding]:
        query = spec.query
        if query is None:
            return
        if not query.strip():
            yield Finding("spec.job.sql.query", "the statement is empty")
            return
        if spec.read_only and (write := _WRITES.match(query)):
            yield Finding(
                "spec.job.sql.query",
                f"readOnly is true: the database refuses this {write.group(1).upper()} every run",
                warning=True,
            )
        if _INLINE_CREDENTIALS.search(query):
            yield Finding(
                "spec.job.sql.query",
                "the statement seems to contain a password; it is recorded in the CronConfig for anyone "
                "who can read it: use queryFrom.secretKeyRef to keep it in a Secret",
                warning=True,
            )


def _where(ctx: JobContext, path: str, ref: SecretKeyRef) -> str:
    return f"{path} (Secret {ctx.run.namespace}/{ref.name} key {ref.key})"


async def _secret(ctx: JobContext, ref: SecretKeyRef, where: str) -> str:
    try:
        value = await ctx.secret(ref.name, ref.key)
    except KeyError:
        raise JobFailed(f"{where}: the Secret has no such key") from None
    except Exception as err:
        status = getattr(err, "status", None)
        why = {404: "the Secret does not exist", 403: "the operator may not read the Secret"}.get(
            status if isinstance(status, int) else 0, f"cannot read the Secret: {type(err).__name__}"
        )
        raise JobFailed(f"{where}: {why}") from None
    if not value.strip():
        raise JobFailed(f"{where}: the value is empty")
    return value


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
