"""``RunItems``: the durable record of every fan-out item, the fence that makes an outcome exactly once.

Delivery through the Redis Stream is at least once; these rows decide. An item is *begun* only if
it is still waiting (``Pending`` or ``Failed``), or, for a delivery that took over a dead worker's
entry, also ``Running``: so a duplicate entry never starts a second attempt beside a live one. An
outcome is written only by the attempt that began last (``attempts`` matches), so a worker that was
presumed dead and finishes late cannot overwrite its successor, and ``Succeeded`` is written once.

Synchronous and thread-safe like :class:`~sundial.store.store.RunStore`; the fan-out job type calls
it from worker threads, in batches.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sundial.models.items import BegunItem, DeadLetter, ItemOutcome
from sundial.models.runs import ItemStatus, RunStatus
from sundial.store import rows
from sundial.store.tables import cron_run_items, cron_runs

_WAITING = (ItemStatus.PENDING.value, ItemStatus.FAILED.value)
_UNFINISHED = (*_WAITING, ItemStatus.RUNNING.value)


class RunItems:
    """Fan-out items in the run-history database (the ``cron_run_items`` table)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def _insert(self) -> postgresql.Insert | sqlite.Insert:
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(cron_run_items)
        return sqlite.insert(cron_run_items)

    # --- the producer -----------------------------------------------------------------------------------

    def add(self, run_id: uuid.UUID, items: Sequence[tuple[str, Any]], at: dt.datetime) -> list[str]:
        """Record new items ``Pending``; returns the keys of the batch that still wait for a first attempt.

        A key already recorded (a source that yields it twice, a producer run again after its
        replica died) is not recorded again; it is returned while it has not started, so a producer
        that died between recording and enqueueing loses nothing (a second entry is harmless).
        """
        if not items:
            return []
        unique: dict[str, Any] = {}
        for key, item in items:
            unique.setdefault(key, item)  # the first of a key wins, as across batches
        c = cron_run_items.c
        with self._engine.begin() as conn:
            conn.execute(
                self._insert().on_conflict_do_nothing(),
                [
                    {
                        "run_id": run_id,
                        "item_key": key,
                        "status": ItemStatus.PENDING.value,
                        "attempts": 0,
                        "item": item,
                        "updated_at": at,
                    }
                    for key, item in unique.items()
                ],
            )
            waiting: list[str] = []
            for chunk in rows.chunks(list(unique)):
                stmt = sa.select(c.item_key).where(
                    c.run_id == run_id,
                    c.item_key.in_(chunk),
                    c.status == ItemStatus.PENDING.value,
                    c.attempts == 0,
                )
                waiting.extend(conn.execute(stmt).scalars())
        return waiting

    # --- workers ----------------------------------------------------------------------------------------

    def begin(
        self, run_id: uuid.UUID, keys: Sequence[str], takeover: Sequence[str], at: dt.datetime
    ) -> list[BegunItem]:
        """Start an attempt of each item that may: waiting ones, and ``takeover`` ones even if Running."""
        c = cron_run_items.c
        begun: list[BegunItem] = []
        with self._engine.begin() as conn:
            for chunk, statuses in ((list(keys), _WAITING), (list(takeover), _UNFINISHED)):
                for part in rows.chunks(chunk):
                    stmt = (
                        sa.update(cron_run_items)
                        .where(c.run_id == run_id, c.item_key.in_(part), c.status.in_(statuses))
                        .values(status=ItemStatus.RUNNING.value, attempts=c.attempts + 1, updated_at=at)
                        .returning(c.item_key, c.attempts, c.item)
                    )
                    begun.extend(BegunItem(k, a, i) for k, a, i in conn.execute(stmt))
        return begun

    def end(self, run_id: uuid.UUID, outcomes: Sequence[ItemOutcome], at: dt.datetime) -> set[str]:
        """Write outcomes in one transaction; returns the keys whose outcome counted (the last attempt's)."""
        c = cron_run_items.c
        applied: set[str] = set()
        # successes (nearly all of them) in one statement per chunk; failures carry their own error
        plain = [o for o in outcomes if o.error is None]
        with self._engine.begin() as conn:
            for status in {o.status for o in plain}:
                pairs = [(o.key, o.attempts) for o in plain if o.status == status]
                for chunk in rows.chunks(pairs):
                    stmt = (
                        sa.update(cron_run_items)
                        .where(
                            c.run_id == run_id,
                            sa.tuple_(c.item_key, c.attempts).in_(chunk),
                            c.status == ItemStatus.RUNNING.value,
                        )
                        .values(status=status.value, error=None, updated_at=at)
                        .returning(c.item_key)
                    )
                    applied.update(conn.execute(stmt).scalars())
            for outcome in outcomes:
                if outcome.error is None:
                    continue
                failed = (
                    sa.update(cron_run_items)
                    .where(
                        c.run_id == run_id,
                        c.item_key == outcome.key,
                        c.attempts == outcome.attempts,
                        c.status == ItemStatus.RUNNING.value,
                    )
                    .values(status=outcome.status.value, error=outcome.error, updated_at=at)
                )
                if conn.execute(failed).rowcount:
                    applied.add(outcome.key)
        return applied

    def release(self, run_id: uuid.UUID, begun: Iterable[tuple[str, int]], at: dt.datetime) -> None:
        """Attempts that never ran (shutdown, a stopped run): back to waiting, the attempt not counted."""
        c = cron_run_items.c
        with self._engine.begin() as conn:
            for key, attempts in begun:
                conn.execute(
                    sa.update(cron_run_items)
                    .where(
                        c.run_id == run_id,
                        c.item_key == key,
                        c.attempts == attempts,
                        c.status == ItemStatus.RUNNING.value,
                    )
                    .values(
                        status=ItemStatus.PENDING.value if attempts == 1 else ItemStatus.FAILED.value,
                        attempts=attempts - 1,
                        updated_at=at,
                    )
                )

    # --- the coordinator --------------------------------------------------------------------------------

    def counts(self, run_id: uuid.UUID) -> dict[ItemStatus, int]:
        c = cron_run_items.c
        stmt = sa.select(c.status, sa.func.count()).where(c.run_id == run_id).group_by(c.status)
        with self._engine.connect() as conn:
            found = {ItemStatus(status): int(n) for status, n in conn.execute(stmt)}
        return {status: found.get(status, 0) for status in ItemStatus}

    def unfinished(
        self, run_id: uuid.UUID, *, after: str = "", limit: int = rows.CHUNK, running: bool = False
    ) -> list[str]:
        """Keys of items still to be done, in key order after ``after`` (paged, never all at once)."""
        c = cron_run_items.c
        stmt = (
            sa.select(c.item_key)
            .where(
                c.run_id == run_id,
                c.status.in_(_UNFINISHED if running else _WAITING),
                c.item_key > after,
            )
            .order_by(c.item_key)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def progress(self, run_id: uuid.UUID) -> Any:
        """The run's ``result`` as the coordinator last wrote it while running (``None`` before)."""
        with self._engine.connect() as conn:
            return conn.execute(sa.select(cron_runs.c.result).where(cron_runs.c.id == run_id)).scalar()

    def set_progress(self, run_id: uuid.UUID, result: Any) -> None:
        """Record progress in the run's ``result`` while it runs (its outcome replaces it)."""
        stmt = (
            sa.update(cron_runs)
            .where(cron_runs.c.id == run_id, cron_runs.c.status == RunStatus.RUNNING.value)
            .values(result=result)
        )
        with self._engine.begin() as conn:
            conn.execute(stmt)

    # --- the command line -------------------------------------------------------------------------------

    def _runs_of(self, namespace: str, name: str, run_id: uuid.UUID | None) -> sa.Select[tuple[uuid.UUID]]:
        stmt = sa.select(cron_runs.c.id).where(cron_runs.c.namespace == namespace, cron_runs.c.name == name)
        return stmt.where(cron_runs.c.id == run_id) if run_id is not None else stmt

    def dead_letters(
        self, namespace: str, name: str, *, run_id: uuid.UUID | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead-lettered items of a CronConfig's runs (or of one run), the most recent first."""
        c = cron_run_items.c
        stmt = (
            sa.select(c.run_id, c.item_key, c.attempts, c.error, c.item, c.updated_at)
            .where(
                c.run_id.in_(self._runs_of(namespace, name, run_id)),
                c.status == ItemStatus.DEAD_LETTERED.value,
            )
            .order_by(c.updated_at.desc(), c.item_key)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [DeadLetter(*row) for row in conn.execute(stmt)]

    def requeue(
        self,
        namespace: str,
        name: str,
        *,
        run_id: uuid.UUID | None,
        at: dt.datetime,
        owner: str,
    ) -> dict[uuid.UUID, int]:
        """Dead letters back to ``Pending`` with their attempts reset: another round under the same run.

        A run that already ended becomes ``Running`` again, owned by ``owner`` (a replica name no
        operator has), so the first operator to look resumes it and records its new outcome; a run
        still running picks them up itself.
        """
        c = cron_run_items.c
        moved: dict[uuid.UUID, int] = {}
        with self._engine.begin() as conn:
            stmt = (
                sa.update(cron_run_items)
                .where(
                    c.run_id.in_(self._runs_of(namespace, name, run_id)),
                    c.status == ItemStatus.DEAD_LETTERED.value,
                )
                .values(status=ItemStatus.PENDING.value, attempts=0, updated_at=at)
                .returning(c.run_id)
            )
            for (rid,) in conn.execute(stmt):
                moved[rid] = moved.get(rid, 0) + 1
            # a requeue that raced with the end of its run (the items moved after the run's last
            # count): the run ended Failed with items still waiting; it is handed back as well
            stranded = (
                sa.select(c.run_id, sa.func.count())
                .join(cron_runs, cron_runs.c.id == c.run_id)
                .where(
                    c.run_id.in_(self._runs_of(namespace, name, run_id)),
                    c.status.in_(_WAITING),
                    cron_runs.c.status == RunStatus.FAILED.value,
                )
                .group_by(c.run_id)
            )
            for rid, n in conn.execute(stranded):
                moved[rid] = max(moved.get(rid, 0), int(n))
            for rid in moved:
                conn.execute(
                    sa.update(cron_runs)
                    .where(
                        cron_runs.c.id == rid,
                        cron_runs.c.status.not_in([RunStatus.PENDING.value, RunStatus.RUNNING.value]),
                    )
                    .values(
                        status=RunStatus.RUNNING.value,
                        reason=None,
                        error=None,
                        finished_at=None,
                        duration_ms=None,
                        started_at=at,
                        replica=owner,
                    )
                )
        return moved
