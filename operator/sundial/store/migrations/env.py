"""Alembic environment for the run history, driven from code (``sundial migrate``), not an alembic.ini.

``sundial.store.migrate`` hands over an open connection in ``config.attributes["connection"]`` (so
it can hold a lock around the upgrade); a bare URL in ``attributes["url"]`` or the ``sqlalchemy.url``
option also works, e.g. for ``alembic revision --autogenerate`` during development.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from sundial.store import engines, tables

config = context.config


def _configure(**options: object) -> None:
    context.configure(
        target_metadata=tables.metadata,
        version_table=tables.VERSION_TABLE,
        compare_type=True,
        **options,  # type: ignore[arg-type]
    )


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection or url in the Alembic config attributes")
    return str(url)


def _run_online(connection: sa.Connection) -> None:
    # SQLite cannot ALTER most things in place: batch mode rebuilds the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        _configure(url=engines.normalize_url(_url()), literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    engine = engines.create_engine(_url())
    try:
        with engine.begin() as connection:
            _run_online(connection)
    finally:
        engine.dispose()


main()
