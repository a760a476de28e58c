"""The reading half of :class:`~sundial.store.store.RunStore`: what the engine and the CLI look up.

Split from the writes (claims, starts, outcomes) so each half reads on its own; every method is
one short read on a pooled connection.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from sundial.models.runs import RunStatus, Trigger
from sundial.store import records, rows
from sundial.store.tables import cron_runs

UNFINISHED = (RunStatus.PENDING.value, RunStatus.RUNNING.value)


class RunQueries:
    """Reads of the run history; :class:`~sundial.store.store.RunStore` provides the engine."""

    _engine: sa.Engine

    def last_slots(self, config_uids: Iterable[str]) -> dict[str, dt.datetime]:
        """:meth:`last_slot` for many CronConfigs at once; uids without scheduled runs are absent."""
        found: dict[str, dt.datetime] = {}
        with self._engine.connect() as conn:
            for chunk in rows.chunks(list(dict.fromkeys(config_uids))):
                stmt = (
                    sa.select(cron_runs.c.config_uid, sa.func.max(cron_runs.c.scheduled_for))
                    .where(cron_runs.c.config_uid.in_(chunk), cron_runs.c.trigger != Trigger.MANUAL.value)
                    .group_by(cron_runs.c.config_uid)
                )
                found.update({uid: slot for uid, slot in conn.execute(stmt)})
        return found

    def existing_slots(
        self, slots: Iterable[tuple[str, dt.datetime, int]]
    ) -> set[tuple[str, dt.datetime, int]]:
        """Which of these (config uid, scheduled_for, attempt) slots are recorded, by whichever replica.

        Lets a replica that saw a slot leased but never claimed take it over.
        """
        c = cron_runs.c
        found: set[tuple[str, dt.datetime, int]] = set()
        with self._engine.connect() as conn:
            for chunk in rows.chunks(list(dict.fromkeys(slots))):
                stmt = sa.select(c.config_uid, c.scheduled_for, c.attempt).where(
                    sa.tuple_(c.config_uid, c.scheduled_for, c.attempt).in_(chunk)
                )
                found.update((uid, slot, attempt) for uid, slot, attempt in conn.execute(stmt))
        return found

    def ended_slots(self, slots: Iterable[tuple[str, dt.datetime, int]]) -> set[tuple[str, dt.datetime, int]]:
        """Which of these (config uid, scheduled_for, attempt) attempts have a final status."""
        c = cron_runs.c
        found: set[tuple[str, dt.datetime, int]] = set()
        with self._engine.connect() as conn:
            for chunk in rows.chunks(list(dict.fromkeys(slots))):
                stmt = sa.select(c.config_uid, c.scheduled_for, c.attempt).where(
                    sa.tuple_(c.config_uid, c.scheduled_for, c.attempt).in_(chunk), ~c.status.in_(UNFINISHED)
                )
                found.update((uid, slot, attempt) for uid, slot, attempt in conn.execute(stmt))
        return found

    def runs(self, namespace: str, name: str, *, limit: int = 50) -> list[records.RunRecord]:
        """The history of a CronConfig by name (all uids it had), newest slot and attempt first."""
        stmt = (
            sa.select(cron_runs)
            .where(cron_runs.c.namespace == namespace, cron_runs.c.name == name)
            .order_by(cron_runs.c.scheduled_for.desc(), cron_runs.c.attempt.desc())
            .limit(limit)
        )
        return self._select_runs(stmt)

    def get_run(self, run_id: uuid.UUID) -> records.RunRecord | None:
        found = self._select_runs(sa.select(cron_runs).where(cron_runs.c.id == run_id))
        return found[0] if found else None

    def unfinished(self, *, replica: str | None = None) -> list[records.RunRecord]:
        """Pending and Running runs (of one replica, if given), oldest first: work to take over or reap."""
        stmt = sa.select(cron_runs).where(cron_runs.c.status.in_(UNFINISHED))
        if replica is not None:
            stmt = stmt.where(cron_runs.c.replica == replica)
        return self._select_runs(stmt.order_by(cron_runs.c.scheduled_for, cron_runs.c.attempt))

    def unfinished_among(self, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these runs are not finished (or not recorded at all): their work must be kept."""
        wanted = set(ids)
        if not wanted:
            return set()
        stmt = sa.select(cron_runs.c.id).where(
            cron_runs.c.id.in_(wanted), ~cron_runs.c.status.in_(UNFINISHED)
        )
        with self._engine.connect() as conn:
            finished = {uuid.UUID(str(row[0])) for row in conn.execute(stmt)}
        return wanted - finished

    def running_configs(self, config_uids: Iterable[str], *, besides: str | None = None) -> set[str]:
        """Which of these CronConfigs have a ``Running`` attempt (on a replica other than ``besides``):
        Forbid's answer while Redis is down."""
        c = cron_runs.c
        found: set[str] = set()
        with self._engine.connect() as conn:
            for chunk in rows.chunks(list(dict.fromkeys(config_uids))):
                stmt = (
                    sa.select(c.config_uid)
                    .where(c.config_uid.in_(chunk), c.status == RunStatus.RUNNING.value)
                    .distinct()
                )
                if besides is not None:
                    stmt = stmt.where(c.replica.is_distinct_from(besides))
                found.update(conn.execute(stmt).scalars())
        return found

    def count_runs(
        self,
        *,
        config_uid: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        status: str | None = None,
        trigger: str | None = None,
    ) -> int:
        """How many runs match every filter given."""
        stmt = sa.select(sa.func.count()).select_from(cron_runs)
        for column, value in (
            (cron_runs.c.config_uid, config_uid),
            (cron_runs.c.namespace, namespace),
            (cron_runs.c.name, name),
            (cron_runs.c.status, status),
            (cron_runs.c.trigger, trigger),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        with self._engine.connect() as conn:
            count: int = conn.execute(stmt).scalar_one()
        return count

    def _select_runs(self, stmt: sa.Select[Any]) -> list[records.RunRecord]:
        with self._engine.connect() as conn:
            return [rows.run_record(row) for row in conn.execute(stmt)]
