"""Engines for the run history: the one place that knows the dialect quirks of PostgreSQL and SQLite."""

from __future__ import annotations

import functools
import json
import sqlite3
from typing import Any

import sqlalchemy as sa

from sundial import metrics
from sundial.dburl import normalize_url

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "create_engine", "normalize_url"]

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another (thread or process) before failing with "database is locked"."""


def create_engine(url: str | sa.URL, *, echo: bool = False) -> sa.Engine:
    """A pooled, thread-safe engine; SQLite gets WAL and a busy timeout so threads wait instead of failing."""
    parsed = normalize_url(url)
    options: dict[str, Any] = {
        "echo": echo,
        # A run's result may hold values JSON cannot encode (datetimes, decimals from a SQL job):
        # history keeps their text rather than failing the write of the outcome.
        "json_serializer": functools.partial(json.dumps, default=str),
    }
    if parsed.get_backend_name() == "postgresql":
        options["pool_pre_ping"] = True  # survive a database restart between two runs
    engine = sa.create_engine(parsed, **options)
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _configure_sqlite)
    sa.event.listen(engine, "before_cursor_execute", _count_statement)
    return engine


def _count_statement(*_args: Any) -> None:
    """Round trips to the history database: the benchmark divides them by the runs recorded."""
    metrics.DB_STATEMENTS.inc()


def _configure_sqlite(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer, nor it them
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, much faster commits
    finally:
        cursor.close()
