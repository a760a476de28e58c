"""The run history: every CronConfig, every spec it had and every run, in PostgreSQL or SQLite.

The database is the fence for exactly-once: a slot (config uid, scheduled instant, attempt) can be
recorded once, whichever replica gets there first. Everything here is synchronous and thread-safe
(one engine pool, one short transaction per call); the operator calls it from worker threads.
The schema is owned by the Alembic migrations in ``migrations/`` (``sundial migrate``).
"""

from sundial.store.migrate import SchemaError, check_schema, current_revision, head_revision, upgrade
from sundial.store.records import ConfigRecord, ConfigVersion, NewRun, RunRecord, RunUpdate
from sundial.store.store import RunStore

__all__ = [
    "ConfigRecord",
    "ConfigVersion",
    "NewRun",
    "RunRecord",
    "RunStore",
    "RunUpdate",
    "SchemaError",
    "check_schema",
    "current_revision",
    "head_revision",
    "upgrade",
]
