"""The initial run history: configs, their spec versions, runs and the manual-trigger fence.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written by hand; literal values (statuses, triggers) are frozen here on purpose: a later change to
the vocabulary needs its own migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("Pending", "Running", "Succeeded", "Failed", "Skipped", "TimedOut", "Cancelled")
TRIGGERS = ("Schedule", "Manual", "Retry", "CatchUp")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _one_of(column: str, values: Sequence[str]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f'"{column}" IN ({quoted})'


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cron_configs",
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("deleted_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("uid", name="pk_cron_configs"),
    )
    op.create_index("ix_cron_configs_namespace_name", "cron_configs", ["namespace", "name"])

    op.create_table(
        "cron_config_versions",
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("recorded_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("uid", "generation", name="pk_cron_config_versions"),
    )

    op.create_table(
        "cron_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("config_uid", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_for", _ts(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("started_at", _ts(), nullable=True),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("replica", sa.String(253), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("result", _json(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("logs", _json(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cron_runs"),
        sa.UniqueConstraint("config_uid", "scheduled_for", "attempt", name="uq_cron_runs_slot"),
        sa.CheckConstraint(_one_of("status", STATUSES), name="ck_cron_runs_status"),
        sa.CheckConstraint(_one_of("trigger", TRIGGERS), name="ck_cron_runs_trigger"),
    )
    op.create_index(
        "ix_cron_runs_namespace_name_scheduled_for",
        "cron_runs",
        ["namespace", "name", sa.text("scheduled_for DESC")],
    )
    op.create_index("ix_cron_runs_status", "cron_runs", ["status"])

    op.create_table(
        "cron_manual_triggers",
        sa.Column("config_uid", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("config_uid", "value", name="pk_cron_manual_triggers"),
    )


def downgrade() -> None:
    op.drop_table("cron_manual_triggers")
    op.drop_index("ix_cron_runs_status", table_name="cron_runs")
    op.drop_index("ix_cron_runs_namespace_name_scheduled_for", table_name="cron_runs")
    op.drop_table("cron_runs")
    op.drop_table("cron_config_versions")
    op.drop_index("ix_cron_configs_namespace_name", table_name="cron_configs")
    op.drop_table("cron_configs")
