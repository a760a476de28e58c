"""Database URLs as users write them, turned into the driver sundial ships or documents.

Shared by the run history and ``sql`` jobs: ``postgresql://`` would make SQLAlchemy pick psycopg2,
which is not installed; sundial ships psycopg 3 (and documents PyMySQL for MySQL/MariaDB).
"""

from __future__ import annotations

import sqlalchemy as sa

DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
"""Bare dialect names and the driver they get."""


def normalize_url(url: str | sa.URL) -> sa.URL:
    """The URL to connect with; ``ArgumentError`` for a string that is no URL."""
    parsed = sa.make_url(url.strip()) if isinstance(url, str) else url
    driver = DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed
