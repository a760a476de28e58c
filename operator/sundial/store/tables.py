"""The run-history schema as SQLAlchemy Core tables (names fixed by the contract).

The migrations in ``migrations/versions`` create exactly this; a test compares the two. Core tables,
not ORM classes: the store works in batches of rows and never needs identity maps.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from sundial.models.runs import ItemStatus, RunStatus, Trigger

VERSION_TABLE = "sundial_alembic_version"
"""Alembic's bookkeeping table, named so it cannot clash with another application in the same database."""


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """``timestamptz`` that always reads back tz-aware UTC and refuses naive values.

    SQLite stores no offset, so values are converted to UTC before they are written (that also keeps
    its text comparisons, and so ordering and the unique slot, correct) and get UTC attached on read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the run history stores aware instants only")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _json() -> sa.types.TypeEngine[Any]:
    """JSON everywhere, JSONB on PostgreSQL; Python ``None`` is SQL NULL, not the JSON ``null``."""
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _one_of(column: str, values: list[str]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f'"{column}" IN ({quoted})'


UID = sa.String(64)
"""A Kubernetes uid (a UUID string), kept as text: it comes from the API server, not from us."""

metadata = sa.MetaData()

cron_configs = sa.Table(
    "cron_configs",
    metadata,
    sa.Column("uid", UID, nullable=False),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("deleted_at", UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint("uid", name="pk_cron_configs"),
    sa.Index("ix_cron_configs_namespace_name", "namespace", "name"),
)

cron_config_versions = sa.Table(
    "cron_config_versions",
    metadata,
    sa.Column("uid", UID, nullable=False),
    sa.Column("generation", sa.BigInteger(), nullable=False),
    sa.Column("spec", _json(), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("uid", "generation", name="pk_cron_config_versions"),
)

cron_runs = sa.Table(
    "cron_runs",
    metadata,
    sa.Column("id", sa.Uuid(), nullable=False),
    sa.Column("config_uid", UID, nullable=False),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("generation", sa.BigInteger(), nullable=False),
    sa.Column("scheduled_for", UTCDateTime(), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("duration_ms", sa.BigInteger(), nullable=True),
    sa.Column("replica", sa.String(253), nullable=True),
    sa.Column("dry_run", sa.Boolean(), nullable=False, default=False),
    sa.Column("result", _json(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("logs", _json(), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_cron_runs"),
    # Also the index for "runs of this uid by slot" (last_slot): a separate one would only slow inserts.
    sa.UniqueConstraint("config_uid", "scheduled_for", "attempt", name="uq_cron_runs_slot"),
    sa.CheckConstraint(_one_of("status", [s.value for s in RunStatus]), name="ck_cron_runs_status"),
    sa.CheckConstraint(_one_of("trigger", [t.value for t in Trigger]), name="ck_cron_runs_trigger"),
    sa.Index("ix_cron_runs_status", "status"),
)
sa.Index(
    "ix_cron_runs_namespace_name_scheduled_for",
    cron_runs.c.namespace,
    cron_runs.c.name,
    cron_runs.c.scheduled_for.desc(),
)

cron_manual_triggers = sa.Table(
    "cron_manual_triggers",
    metadata,
    sa.Column("config_uid", UID, nullable=False),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("run_id", sa.Uuid(), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("config_uid", "value", name="pk_cron_manual_triggers"),
)
"""Each ``sundial.io/run-now`` value already fired: the fence that makes it fire once, across restarts."""

ITEM_KEY = sa.String(512)
"""A fan-out item's key; longer keys are stored as their hash (``sundial.jobs.itemkeys``)."""

cron_run_items = sa.Table(
    "cron_run_items",
    metadata,
    sa.Column("run_id", sa.Uuid(), nullable=False),
    sa.Column("item_key", ITEM_KEY, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("item", _json(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # UNIQUE (run_id, item_key), as the primary key: the fence that makes an item's outcome exactly once
    sa.PrimaryKeyConstraint("run_id", "item_key", name="pk_cron_run_items"),
    sa.ForeignKeyConstraint(["run_id"], ["cron_runs.id"], name="fk_cron_run_items_run", ondelete="CASCADE"),
    sa.CheckConstraint(_one_of("status", [s.value for s in ItemStatus]), name="ck_cron_run_items_status"),
    sa.Index("ix_cron_run_items_run_status", "run_id", "status"),
)
"""One row per fan-out item of a run: its status, attempts and last error (dead letters included)."""
