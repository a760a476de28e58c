"""Fan-out items: one row per item of a run, the fence that makes each item's outcome exactly once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ITEM_STATUSES = ("Pending", "Running", "Succeeded", "Failed", "DeadLettered")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    quoted = ", ".join(f"'{v}'" for v in ITEM_STATUSES)
    op.create_table(
        "cron_run_items",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("item_key", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("item", _json(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "item_key", name="pk_cron_run_items"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["cron_runs.id"], name="fk_cron_run_items_run", ondelete="CASCADE"
        ),
        sa.CheckConstraint(f'"status" IN ({quoted})', name="ck_cron_run_items_status"),
    )
    op.create_index("ix_cron_run_items_run_status", "cron_run_items", ["run_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_cron_run_items_run_status", table_name="cron_run_items")
    op.drop_table("cron_run_items")
