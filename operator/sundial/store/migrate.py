"""Schema migrations of the run history (``sundial migrate``) and the start-up check that they ran.

Alembic is driven from code: the scripts ship inside the package, so no alembic.ini is needed.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from sundial.store import engines, tables

MIGRATIONS = Path(__file__).resolve().with_name("migrations")

_PG_MIGRATION_LOCK = 0x53554E4449414C  # "SUNDIAL": replicas starting together migrate one at a time


class SchemaError(RuntimeError):
    """The database schema is not the one this sundial was built for."""


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision this version of sundial needs."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # only possible if the shipped scripts are missing
        raise SchemaError(f"no migration scripts found in {MIGRATIONS}")
    return head


def upgrade(url: str | sa.URL, *, revision: str = "head") -> str | None:
    """Bring the schema up to ``revision`` (idempotent) and return the revision it is at afterwards."""
    engine = engines.create_engine(url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # DDL is transactional on PostgreSQL: a second replica waits here, then finds nothing to do.
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
            command.upgrade(_config(connection), revision)
            return _current(connection)
    finally:
        engine.dispose()


def current_revision(url: str | sa.URL) -> str | None:
    """The revision the database is at; ``None`` for an empty database."""
    engine = engines.create_engine(url)
    try:
        with engine.connect() as connection:
            return _current(connection)
    finally:
        engine.dispose()


def check_schema(url: str | sa.URL) -> None:
    """Fail fast, with the command that fixes it, unless the database is exactly at this sundial's head."""
    current, head = current_revision(url), head_revision()
    if current == head:
        return
    known = {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
    if current is not None and current not in known:
        raise SchemaError(
            f"database schema at revision {current}, which this sundial does not know (it needs {head}):"
            " the database was migrated by a newer sundial; run that version"
        )
    raise SchemaError(
        f"database schema at revision {current or '<empty>'}, this sundial needs {head}:"
        " run `sundial migrate`"
    )


def _current(connection: sa.Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": tables.VERSION_TABLE})
    return context.get_current_revision()
