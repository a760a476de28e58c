"""The run history's write-ahead journal while PostgreSQL is down: a Redis stream, drained in order.

Runs go on under their Redis leases when the database is unreachable; what they would have
written (claims, starts, outcomes) is appended here, durable beyond this process, and written to
the database by whichever replica drains it once the database is back. Entries are applied in
stream order and every write is idempotent (a claim of a recorded slot is a no-op, a start or an
outcome only moves an unfinished row), so a drainer that dies half-way is simply repeated.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, cast

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import TypeAdapter
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from sundial.store.records import NewRun, RunUpdate

STREAM = "sundial:journal"
"""The stream's key, next to the lease keys of :mod:`sundial.leases.keys` (same prefix)."""
DRAIN_LOCK = "sundial:journal:drain"
"""Held by the replica writing the journal to the database: one writer, not one per replica."""

Op = Literal["claim", "start", "finish"]


@dataclasses.dataclass(frozen=True, slots=True)
class Start:
    """A claim that started (the start fence, written to the journal)."""

    id: uuid.UUID
    at: datetime


Entry = NewRun | Start | RunUpdate
_CODECS: dict[Op, TypeAdapter[NewRun] | TypeAdapter[Start] | TypeAdapter[RunUpdate]] = {
    "claim": TypeAdapter(NewRun),
    "start": TypeAdapter(Start),
    "finish": TypeAdapter(RunUpdate),
}


def _op(entry: Entry) -> Op:
    if isinstance(entry, NewRun):
        return "claim"
    if isinstance(entry, Start):
        return "start"
    return "finish"


class Journal(Protocol):
    async def append(self, entries: Sequence[Entry]) -> None:
        """Append in order, atomically for the batch; raises if Redis is unreachable."""

    async def read(self, count: int) -> list[tuple[str, Entry]]:
        """The oldest ``count`` entries with their stream ids."""

    async def remove(self, ids: Sequence[str]) -> None:
        """Drop applied entries."""

    async def length(self) -> int:
        """How many entries wait to be written to the database."""

    async def lock(self, token: str, ttl: float) -> bool:
        """Become the one drainer for ``ttl`` seconds (renewed by taking it again); False if another is."""

    async def unlock(self, token: str) -> None: ...

    async def close(self) -> None: ...


_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class RedisJournal:
    """One stream shared by all replicas (key ``sundial:journal``)."""

    def __init__(self, url: str) -> None:
        # a connection a Redis restart closed fails once, then a fresh one is used (as the leases' client)
        self._redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        )

    async def close(self) -> None:
        await self._redis.aclose()

    async def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for entry in entries:
                op = _op(entry)
                pipe.xadd(STREAM, {"op": op, "data": _CODECS[op].dump_json(entry)})  # type: ignore[arg-type]
            await pipe.execute()

    async def read(self, count: int) -> list[tuple[str, Entry]]:
        found: Any = await self._redis.xrange(STREAM, "-", "+", count=count)
        out: list[tuple[str, Entry]] = []
        for entry_id, fields in found or []:
            op = cast(Op, fields["op"])
            out.append((str(entry_id), _CODECS[op].validate_json(fields["data"])))
        return out

    async def remove(self, ids: Sequence[str]) -> None:
        if ids:
            await self._redis.xdel(STREAM, *ids)

    async def length(self) -> int:
        return int(await self._redis.xlen(STREAM))

    async def lock(self, token: str, ttl: float) -> bool:
        ms = max(1, int(ttl * 1000))
        if await self._redis.set(DRAIN_LOCK, token, nx=True, px=ms):
            return True
        return bool(await self._redis.eval(_RENEW, 1, DRAIN_LOCK, token, ms))

    async def unlock(self, token: str) -> None:
        await self._redis.eval(_RELEASE, 1, DRAIN_LOCK, token)
