"""Rows of ``cron_runs`` as the store writes and reads them: statement shapes, chunks, conversions.

Pure functions and constants, no connection: ``RunStore`` composes them into transactions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from sundial.models.runs import RunStatus, Trigger
from sundial.store import records

CHUNK = 500
"""Rows (or ids) per statement: well under the bind-parameter limits of both SQLite and PostgreSQL."""

MAX_MANUAL_VALUE = 1024
"""Longer ``run-now`` values are fenced by their hash: a b-tree key must stay small on PostgreSQL."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def literals(values: Sequence[str]) -> list[sa.ColumnElement[str]]:
    return [sa.literal_column(f"'{value}'", sa.String()) for value in values]


def slot(run: records.NewRun) -> tuple[str, dt.datetime, int]:
    return run.config_uid, run.scheduled_for, run.attempt


def manual_key(value: str) -> str:
    if len(value) <= MAX_MANUAL_VALUE:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def chunks(items: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield list(items[start : start + CHUNK])


UNNEST_COLUMNS = (
    ("id", "uuid"),
    ("config_uid", "text"),
    ("namespace", "text"),
    ("name", "text"),
    ("generation", "bigint"),
    ("scheduled_for", "timestamptz"),
    ("trigger", "text"),
    ("attempt", "int"),
    ("status", "text"),
    ("reason", "text"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("duration_ms", "bigint"),
    ("replica", "text"),
    ("dry_run", "bool"),
)
UNNEST_INSERT = (
    f"INSERT INTO cron_runs ({', '.join(name for name, _ in UNNEST_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%s::{kind}[]' for _, kind in UNNEST_COLUMNS)}) "
    "ON CONFLICT DO NOTHING RETURNING id"
)


def new_row(run: records.NewRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "config_uid": run.config_uid,
        "namespace": run.namespace,
        "name": run.name,
        "generation": run.generation,
        "scheduled_for": run.scheduled_for,
        "trigger": run.trigger,
        "attempt": run.attempt,
        "status": run.status,
        "reason": run.reason,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_ms": run.duration_ms,
        "replica": run.replica,
        "dry_run": run.dry_run,
        "result": None,
        "error": None,
        "logs": None,
    }


def run_record(row: sa.Row[Any]) -> records.RunRecord:
    data = row._asdict()
    data["status"] = RunStatus(data["status"])
    data["trigger"] = Trigger(data["trigger"])
    data["logs"] = data["logs"] or []
    return records.RunRecord(**data)
