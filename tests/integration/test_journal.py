"""PostgreSQL down: history writes go to the Redis journal and reach the database, in order, when it is back.

A PostgreSQL server of its own (stopped and started again here) and the session's real Redis.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync

from sundial.engine.history import History, StoreUnavailable
from sundial.store import NewRun, RunStore, RunUpdate, upgrade
from sundial.store.journal import STREAM, RedisJournal
from tests.support import services

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


class Server:
    """A PostgreSQL server that can be stopped (connections refused) and started again on its port."""

    def __init__(self, pg: services.Postgres) -> None:
        self.pg = pg
        self.bindir = services._postgres_bin()
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.pg.datadir), "-w", *args],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def start(self) -> None:
        sock = self.pg.datadir.parent / "sock"
        options = f"-p {self.pg.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("start", "-o", options, "-l", str(self.pg.datadir.parent / "restarted.log"))


@pytest.fixture
def server() -> Iterator[Server]:
    with services.postgres() as pg:
        upgrade(pg.url)
        srv = Server(pg)
        yield srv
        if not Path(pg.datadir, "postmaster.pid").exists():
            return
        # started again by pg_ctl: not the process the fixture started, so stop it here
        srv.stop()


@pytest.fixture
def journal(redis_url: str) -> Iterator[str]:
    redis_sync.Redis.from_url(redis_url).delete(STREAM)
    yield redis_url
    redis_sync.Redis.from_url(redis_url).delete(STREAM)


def run(slot: int, **kw: object) -> NewRun:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "config_uid": "uid-1",
        "namespace": "ns",
        "name": "j",
        "generation": 1,
        "scheduled_for": T0 + dt.timedelta(seconds=slot),
        "trigger": "Schedule",
        "attempt": 1,
        "status": "Pending",
        "replica": "a",
    }
    return NewRun(**{**fields, **kw})  # type: ignore[arg-type]


def outcome(r: NewRun, at: dt.datetime) -> RunUpdate:
    return RunUpdate(
        id=r.id,
        status="Succeeded",
        reason=None,
        finished_at=at,
        duration_ms=5,
        result={"n": 1},
        error=None,
        logs=[],
    )


async def drained(history: History) -> bool:
    for _ in range(100):
        if await history.consistent():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_writes_during_an_outage_reach_the_database_in_order(server: Server, journal: str) -> None:
    store = RunStore(server.pg.url)
    history = History(store, journal=RedisJournal(journal), flush_seconds=0.05)
    try:
        before = run(0)
        assert await history.claim([before]) == {before.id}  # the database is up: written directly
        server.stop()
        during = [run(i) for i in range(1, 4)]
        assert await history.claim(during) == {r.id for r in during}  # into the journal
        started_at = T0 + dt.timedelta(seconds=5)
        assert await history.start_runs([before.id, during[0].id], "a", started_at) == {
            before.id,
            during[0].id,
        }
        history.finish(outcome(during[0], started_at))
        history.finish(outcome(before, started_at))
        await history.flush()
        assert not await history.consistent()
        assert redis_sync.Redis.from_url(journal).xlen(STREAM) == 7  # 3 claims, 2 starts, 2 outcomes
        server.start()
        await asyncio.sleep(2.5)  # the database is tried again after DOWN_SECONDS
        await history.flush()  # outcomes first; the journal is written by a task of its own
        assert await drained(history)
        rows = {r.scheduled_for: r for r in store.runs("ns", "j", limit=100)}
        assert len(rows) == 4
        assert (rows[T0].status, rows[T0].started_at) == ("Succeeded", started_at)
        first = rows[T0 + dt.timedelta(seconds=1)]
        assert (first.id, first.status, first.started_at, first.result) == (
            during[0].id,
            "Succeeded",
            started_at,
            {"n": 1},
        )
        assert {rows[T0 + dt.timedelta(seconds=i)].status for i in (2, 3)} == {"Pending"}
        # a run whose claim went to the journal keeps writing there until it ends, so it is
        # never applied before its claim; once drained, the database has everything
        assert await history.start_runs([during[1].id], "a", started_at) == {during[1].id}
        await asyncio.sleep(5.5)  # the next look for journal entries
        await history.flush()
        assert await drained(history)
        assert store.get_run(during[1].id).status == "Running"  # type: ignore[union-attr]
    finally:
        await history.close()
        store.close()


async def test_with_neither_store_nothing_is_claimed(server: Server, redis_url: str) -> None:
    """Fail closed: a claim neither PostgreSQL nor Redis can take raises, so nothing runs."""
    store = RunStore(server.pg.url)
    unreachable = f"redis://127.0.0.1:{services.free_port()}/0"
    history = History(store, journal=RedisJournal(unreachable))
    try:
        server.stop()
        with pytest.raises(StoreUnavailable):
            await history.claim([run(1)])
        skipped = [run(2, status="Skipped", reason="StoreUnavailable", finished_at=T0, duration_ms=0)]
        history.record_later(skipped)
        await history.flush()  # still nowhere to write: kept
        server.start()
        await asyncio.sleep(2.5)
        await history.flush()
        assert [(r.status, r.reason) for r in store.runs("ns", "j")] == [("Skipped", "StoreUnavailable")]
    finally:
        await history.close()
        store.close()
