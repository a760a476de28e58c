"""Connection pools of ``sql`` jobs: one small engine per database URL, shared, disposed when idle.

A hundred CronConfigs on one database share one pool of at most ``pool_size + max_overflow``
connections instead of opening a hundred. Attempts queue for a connection on an asyncio semaphore
(cancellable, no thread held while waiting), so the pool itself never blocks a worker thread. A pool
nobody used for ``idle_seconds`` is disposed on the next acquire, so a URL that disappeared from
every spec (a rotated password) does not keep connections open for ever.

Everything here runs on the event loop thread except :meth:`Pools.release`, which is thread-safe.
The URL is a secret (it holds the password): it keys the pools but is only ever shown through
:func:`safe_url`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from sundial.dburl import normalize_url

log = logging.getLogger("sundial.jobs.sql")

POOL_SIZE = 2
MAX_OVERFLOW = 3
IDLE_SECONDS = 300.0
CONNECT_TIMEOUT = 10


def safe_url(url: str | URL) -> str:
    """The URL as it may be logged or recorded: the password replaced by ``***``."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url.strip())
    except sa.exc.ArgumentError:
        return "(not a URL)"
    return parsed.render_as_string(hide_password=True)


def passwords(url: str) -> set[str]:
    """The password of ``url`` as written and decoded: redacted wherever it could show up alone."""
    try:
        password = make_url(url.strip()).password
    except sa.exc.ArgumentError:
        return set()
    if not password:
        return set()
    from urllib.parse import quote_plus

    return {str(password), quote_plus(str(password))}


def create_engine(url: URL) -> Engine:
    """A small pool with pre-ping (a connection the server dropped is replaced, not reported)."""
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        if url.database not in (None, "", ":memory:"):  # a memory database has a singleton pool
            kwargs.update(pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW)
    else:
        kwargs.update(pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, pool_timeout=30)
    if backend in ("postgresql", "mysql", "mariadb"):
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    return sa.create_engine(url, **kwargs)


@dataclass
class Pool:
    """One engine and the attempts using it."""

    engine: Engine
    label: str
    """The URL without its password."""
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(POOL_SIZE + MAX_OVERFLOW))
    users: int = 0
    idle_since: float = 0.0


class Pools:
    """Engines keyed by the URL string, reference-counted by in-flight attempts."""

    def __init__(
        self, *, idle_seconds: float = IDLE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._pools: dict[str, Pool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._pools)

    def engines(self) -> list[Engine]:
        return [pool.engine for pool in self._pools.values()]

    async def acquire(self, url: str) -> Pool:
        """The pool of ``url`` with one connection slot taken; pair with :meth:`release`.

        Raises what ``create_engine`` raises for a bad URL or a missing driver.
        """
        self._loop = asyncio.get_running_loop()
        self.sweep()
        pool = self._pools.get(url)
        if pool is None:
            parsed = normalize_url(url)
            pool = Pool(engine=create_engine(parsed), label=safe_url(parsed))
            self._pools[url] = pool
            log.info("sql: opened a connection pool for %s", pool.label)
        pool.users += 1
        try:
            await pool.slots.acquire()
        except BaseException:
            self._done(pool, slot=False)
            raise
        return pool

    def release(self, pool: Pool) -> None:
        """Give back the slot :meth:`acquire` took; callable from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._done(pool, slot=True)
        else:
            loop.call_soon_threadsafe(self._done, pool, True)

    def _done(self, pool: Pool, slot: bool) -> None:
        if slot:
            pool.slots.release()
        pool.users -= 1
        if pool.users == 0:
            pool.idle_since = self.clock()

    def sweep(self) -> int:
        """Dispose the pools nobody has used for ``idle_seconds``; returns how many."""
        now = self.clock()
        idle = [
            url
            for url, pool in self._pools.items()
            if pool.users == 0 and now - pool.idle_since >= self.idle_seconds
        ]
        for url in idle:
            pool = self._pools.pop(url)
            pool.engine.dispose()
            log.info("sql: closed the idle connection pool for %s", pool.label)
        return len(idle)

    def close(self) -> None:
        """Dispose every pool (shutdown: the last attempt has ended)."""
        for pool in self._pools.values():
            pool.engine.dispose()
        self._pools.clear()
