"""``RunStore``: the synchronous, thread-safe gateway to the run history.

Every method is one short transaction on a pooled connection, so worker threads can share one store.
Instants are computed by the caller and passed in (never the database's ``now()``), so tests control
time, and every instant read back is tz-aware UTC.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sundial.models.runs import RunStatus
from sundial.store import engines, records, rows
from sundial.store.queries import UNFINISHED, RunQueries
from sundial.store.tables import cron_config_versions, cron_configs, cron_manual_triggers, cron_runs

_Insert = postgresql.Insert | sqlite.Insert


class RunStore(RunQueries):
    """The run history of every CronConfig, in PostgreSQL or a SQLite file (single replica only).

    The schema must already be at head (``sundial.store.migrate.upgrade``); the store never creates it.
    """

    def __init__(self, url: str | sa.URL, *, echo: bool = False) -> None:
        backend = engines.normalize_url(url).get_backend_name()
        if backend not in ("postgresql", "sqlite"):
            raise ValueError(f"unsupported database {backend!r}: use PostgreSQL or SQLite")
        self._engine = engines.create_engine(url, echo=echo)

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def close(self) -> None:
        """Close every pooled connection; the store must not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- CronConfigs and their specs -------------------------------------------------------------------

    def record_configs(
        self,
        configs: Sequence[tuple[str, str, str, dt.datetime]],
        versions: Sequence[tuple[str, int, dict[str, Any]]],
        *,
        at: dt.datetime | None = None,
    ) -> None:
        """Remember CronConfigs by uid and the spec of each generation (the first one recorded stays).

        Batched: thousands of CronConfigs at start-up cost two statements, not thousands of
        transactions; repeating a CronConfig or a generation is harmless."""
        if not configs and not versions:
            return
        with self._engine.begin() as conn:
            if configs:
                stmt = self._insert(cron_configs)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[cron_configs.c.uid],
                    set_={"namespace": stmt.excluded.namespace, "name": stmt.excluded.name},
                )
                latest = {uid: (uid, ns, name, created) for uid, ns, name, created in configs}
                conn.execute(
                    stmt,
                    [
                        {"uid": u, "namespace": n, "name": m, "created_at": c}
                        for u, n, m, c in latest.values()
                    ],
                )
            if versions:
                when = at or rows.now()
                unique = {(uid, gen): spec for uid, gen, spec in versions}
                conn.execute(
                    self._insert(cron_config_versions).on_conflict_do_nothing(),
                    [
                        {"uid": u, "generation": g, "spec": spec, "recorded_at": when}
                        for (u, g), spec in unique.items()
                    ],
                )

    def mark_deleted(self, uid: str, at: dt.datetime) -> bool:
        """Note that a CronConfig is gone; its history stays. ``False`` if unknown or already marked."""
        stmt = (
            sa.update(cron_configs)
            .where(cron_configs.c.uid == uid, cron_configs.c.deleted_at.is_(None))
            .values(deleted_at=at)
        )
        with self._engine.begin() as conn:
            return conn.execute(stmt).rowcount > 0

    def get_config(self, uid: str) -> records.ConfigRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(cron_configs).where(cron_configs.c.uid == uid)).first()
        return None if row is None else records.ConfigRecord(**row._asdict())

    def versions(self, uid: str) -> list[records.ConfigVersion]:
        """Every recorded spec of one CronConfig, oldest generation first."""
        stmt = (
            sa.select(cron_config_versions)
            .where(cron_config_versions.c.uid == uid)
            .order_by(cron_config_versions.c.generation)
        )
        with self._engine.connect() as conn:
            return [records.ConfigVersion(**row._asdict()) for row in conn.execute(stmt)]

    # --- Claiming slots ----------------------------------------------------------------------------------

    def claim(self, runs: Sequence[records.NewRun]) -> set[uuid.UUID]:
        """Record runs unless their slot (config uid, instant, attempt) is taken; return the ids inserted.

        This is the exactly-once fence between replicas: a run whose id is not returned must not be
        executed. One transaction for the whole batch, one INSERT per ``rows.CHUNK`` rows. Rows are sorted
        by slot so that two replicas claiming overlapping batches lock them in the same order and
        cannot deadlock. The conflict has no target on purpose: a clash on the id (deterministic ids
        racing on PostgreSQL) must also mean "not claimed", never an error.
        """
        if not runs:
            return set()
        ordered = sorted(runs, key=rows.slot)
        if self._engine.dialect.name == "postgresql":
            return self._claim_unnest(ordered)
        new_rows = [rows.new_row(run) for run in ordered]
        # executemany + RETURNING: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues")
        # from ONE cached compiled statement; building .values(new_rows) would recompile per batch.
        stmt = self._insert(cron_runs).on_conflict_do_nothing().returning(cron_runs.c.id)
        claimed: set[uuid.UUID] = set()
        with self._engine.begin() as conn:
            for chunk in rows.chunks(new_rows):
                claimed.update(conn.execute(stmt, chunk).scalars())
        return claimed

    def _claim_unnest(self, runs: Sequence[records.NewRun]) -> set[uuid.UUID]:
        """PostgreSQL: one short statement with one array per column, whatever the batch size.

        A multi-row VALUES list of 1,000 rows costs more CPU to build and convert than the insert
        itself; ``unnest`` keeps the statement text constant (cached, prepared) and the work in C.
        """
        columns = {name: [getattr(r, name) for r in runs] for name, _ in rows.UNNEST_COLUMNS}
        for name in ("scheduled_for", "started_at", "finished_at"):
            for value in columns[name]:
                if value is not None and value.utcoffset() is None:
                    err = ValueError(
                        f"naive datetime {value!r} in {name}: the run history stores aware instants only"
                    )
                    raise sa.exc.StatementError(str(err), rows.UNNEST_INSERT, None, err)
        params = tuple(columns[name] for name, _ in rows.UNNEST_COLUMNS)
        claimed: set[uuid.UUID] = set()
        with self._engine.begin() as conn:
            for row in conn.exec_driver_sql(rows.UNNEST_INSERT, params):
                claimed.add(row[0])
        return claimed

    def claim_manual(
        self, config_uid: str, value: str, run: records.NewRun, *, at: dt.datetime | None = None
    ) -> bool:
        """Record a ``run-now`` run once per annotation value, across restarts and replicas.

        ``False`` (and nothing written) if this value already fired. If the run's slot is taken the
        insert fails with ``sqlalchemy.exc.IntegrityError`` and the value is not fenced either, so a
        retry with another ``scheduled_for`` can still fire it.
        """
        if run.config_uid != config_uid:
            raise ValueError(f"run {run.id} belongs to {run.config_uid}, not to {config_uid}")
        fence = (
            self._insert(cron_manual_triggers)
            .values(
                config_uid=config_uid,
                value=rows.manual_key(value),
                run_id=run.id,
                recorded_at=at or rows.now(),
            )
            .on_conflict_do_nothing()
            .returning(cron_manual_triggers.c.run_id)
        )
        with self._engine.begin() as conn:
            if conn.execute(fence).first() is None:
                return False
            conn.execute(sa.insert(cron_runs).values(rows.new_row(run)))
        return True

    def release_claims(self, ids: Iterable[uuid.UUID]) -> int:
        """Delete claimed runs that never started (``Pending``): the slot goes back to the pool."""
        deleted = 0
        with self._engine.begin() as conn:
            for chunk in rows.chunks(list(ids)):
                stmt = sa.delete(cron_runs).where(
                    cron_runs.c.id.in_(chunk), cron_runs.c.status == RunStatus.PENDING.value
                )
                deleted += conn.execute(stmt).rowcount
        return deleted

    def adopt(
        self, run_id: uuid.UUID, previous: str | None, replica: str, *, status: RunStatus = RunStatus.PENDING
    ) -> bool:
        """Move a run of a dead replica (never started, or ``Running`` and resumable) to this one.

        False if anything changed the row meanwhile: two reapers can never both adopt it.
        """
        c = cron_runs.c
        owner = c.replica.is_(None) if previous is None else c.replica == previous
        stmt = (
            sa.update(cron_runs)
            .where(c.id == run_id, c.status == status.value, owner)
            .values(replica=replica)
        )
        with self._engine.begin() as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    # --- Progress and outcome ----------------------------------------------------------------------------

    def mark_started(self, started: Sequence[tuple[uuid.UUID, dt.datetime]]) -> int:
        """Pending runs become Running at their real start times (claimed ahead, started on time)."""
        if not started:
            return 0
        c = cron_runs.c
        stmt = (
            sa.update(cron_runs)
            .where(c.id == sa.bindparam("b_id", type_=c.id.type), c.status == RunStatus.PENDING.value)
            .values(
                status=RunStatus.RUNNING.value,
                started_at=sa.bindparam("b_started_at", type_=c.started_at.type),
            )
        )
        with self._engine.begin() as conn:
            moved: int = conn.execute(stmt, [{"b_id": i, "b_started_at": at} for i, at in started]).rowcount
        return moved

    def start(self, ids: Sequence[uuid.UUID], replica: str, at: dt.datetime) -> set[uuid.UUID]:
        """The start fence: Pending runs of ``replica`` become Running; only the ids returned may run.

        A claim another replica adopted meanwhile (it thought this one dead) is no longer this
        replica's row and is not returned, so the attempt runs on exactly one of them. Recording the
        start before the attempt runs also means a replica that dies after launching leaves a
        ``Running`` row (reaped as ``OwnerLost``), never a ``Pending`` one that would run again.
        """
        if not ids:
            return set()
        c = cron_runs.c
        started: set[uuid.UUID] = set()
        with self._engine.begin() as conn:
            for chunk in rows.chunks(list(ids)):
                stmt = (
                    sa.update(cron_runs)
                    .where(c.id.in_(chunk), c.status == RunStatus.PENDING.value, c.replica == replica)
                    .values(status=RunStatus.RUNNING.value, started_at=at)
                    .returning(c.id)
                )
                started.update(uuid.UUID(str(i)) for i in conn.execute(stmt).scalars())
        return started

    def finish(self, updates: Sequence[records.RunUpdate]) -> int:
        """Write the outcomes of many attempts in one transaction; returns how many rows changed.

        Only unfinished (Pending/Running) runs are updated: the first final status wins, so a reaper
        that already marked a run ``TimedOut`` is not overwritten by a late worker, nor vice versa.
        """
        if not updates:
            return 0
        c = cron_runs.c
        started_at = sa.bindparam("b_started_at", type_=c.started_at.type)
        dry_run = sa.bindparam("b_dry_run", type_=c.dry_run.type)
        generation = sa.bindparam("b_generation", type_=c.generation.type)
        stmt = (
            sa.update(cron_runs)
            # Inlined literals: an expanding IN cannot be used with executemany.
            .where(c.id == sa.bindparam("b_id", type_=c.id.type), c.status.in_(rows.literals(UNFINISHED)))
            .values(
                status=sa.bindparam("b_status", type_=c.status.type),
                started_at=sa.func.coalesce(started_at, c.started_at),
                dry_run=sa.func.coalesce(dry_run, c.dry_run),
                generation=sa.func.coalesce(generation, c.generation),
                reason=sa.bindparam("b_reason", type_=c.reason.type),
                finished_at=sa.bindparam("b_finished_at", type_=c.finished_at.type),
                duration_ms=sa.bindparam("b_duration_ms", type_=c.duration_ms.type),
                result=sa.bindparam("b_result", type_=c.result.type),
                error=sa.bindparam("b_error", type_=c.error.type),
                logs=sa.bindparam("b_logs", type_=c.logs.type),
            )
        )
        params = [
            {
                "b_id": u.id,
                "b_status": u.status,
                "b_started_at": u.started_at,
                "b_dry_run": u.dry_run,
                "b_generation": u.generation,
                "b_reason": u.reason,
                "b_finished_at": u.finished_at,
                "b_duration_ms": u.duration_ms,
                "b_result": u.result,
                "b_error": u.error,
                "b_logs": u.logs,
            }
            for u in updates
        ]
        with self._engine.begin() as conn:
            changed: int = conn.execute(stmt, params).rowcount
        return changed

    # --- Internals ---------------------------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> _Insert:
        """INSERT with ON CONFLICT support: the same statement shape on both backends."""
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)
