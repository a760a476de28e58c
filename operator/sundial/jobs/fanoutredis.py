"""The fan-out queue of several replicas: one Redis Stream per run, one consumer group, Lua for atomicity.

Keys of run R: ``sundial:fanout:R:items`` (the stream, group ``workers``), ``sundial:fanout:R:later``
(retries by due time), ``sundial:fanout:R:stop`` (no more entries handed out). Every run in
progress is a field of ``sundial:fanout:runs`` holding its :class:`RunMeta`, so one ``HGETALL``
tells a replica's workers what to read.

- Reading is one script: it counts the group's pending entries (delivered, not acknowledged, on
  any replica) and reads only as many as keep that count ≤ ``parallelism``: the limit holds across
  replicas without a lock.
- An acknowledged entry is also deleted, so the stream's length is the run's backlog, which the
  producer keeps bounded.
- A retry moves the entry to the delayed set in the same script that acknowledges it, and back
  into the stream in one script when due: an item is never in neither place, nor in both.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from sundial.jobs.fanoutqueue import CLAIM_IDLE_MS, Delivery, ItemQueue, RunMeta

RUNS = "sundial:fanout:runs"
GROUP = "workers"

_READ = """
if redis.call('exists', KEYS[2]) == 1 then return {} end
local ok, pending = pcall(redis.call, 'xpending', KEYS[1], ARGV[1])
if not ok then return {} end
local free = tonumber(ARGV[3]) - tonumber(pending[1])
if free <= 0 then return {} end
local n = math.min(free, tonumber(ARGV[4]))
local got = redis.call('xreadgroup', 'GROUP', ARGV[1], ARGV[2], 'COUNT', n, 'STREAMS', KEYS[1], '>')
if not got then return {} end
return got[1][2]
"""

_LATER = """
if redis.call('xack', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('xdel', KEYS[1], ARGV[2])
  redis.call('zadd', KEYS[2], ARGV[4], ARGV[3])
  return 1
end
return 0
"""

_PROMOTE = """
if redis.call('exists', KEYS[3]) == 1 then return 0 end
if redis.call('exists', KEYS[1]) == 0 then return 0 end
local due = redis.call('zrangebyscore', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, key in ipairs(due) do
  redis.call('xadd', KEYS[1], '*', 'k', key)
  redis.call('zrem', KEYS[2], key)
end
return #due
"""

_ACK = """
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('xack', KEYS[1], ARGV[1], ARGV[i])
  redis.call('xdel', KEYS[1], ARGV[i])
end
return n
"""


_FIELDS = {f.name for f in dataclasses.fields(RunMeta)}


def _keys(run_id: str) -> tuple[str, str, str]:
    base = f"sundial:fanout:{run_id}"
    return f"{base}:items", f"{base}:later", f"{base}:stop"


def _deliveries(entries: Any, *, takeover: bool) -> list[Delivery]:
    out: list[Delivery] = []
    for entry in entries or ():
        if not entry or entry[1] is None:  # deleted while pending
            continue
        entry_id, raw = entry[0], entry[1]
        fields = dict(zip(raw[::2], raw[1::2], strict=True)) if isinstance(raw, list) else dict(raw)
        out.append(Delivery(str(entry_id), str(fields["k"]), takeover or fields.get("t") == "1"))
    return out


class RedisQueue(ItemQueue):
    def __init__(self, url: str) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            health_check_interval=30,
            max_connections=16,
            timeout=30,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._read = self._redis.register_script(_READ)
        self._later = self._redis.register_script(_LATER)
        self._promote = self._redis.register_script(_PROMOTE)
        self._ack = self._redis.register_script(_ACK)
        self._cursors: dict[str, str] = {}
        """Where the last XAUTOCLAIM of each run stopped: the next one goes on from there."""

    async def close(self) -> None:
        await self._redis.aclose()

    async def create(self, run_id: str, meta: RunMeta) -> None:
        items, _later, stop = _keys(run_id)
        try:
            await self._redis.xgroup_create(items, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(stop)
            pipe.hset(RUNS, run_id, json.dumps(dataclasses.asdict(meta), default=str))
            await pipe.execute()

    async def active(self) -> dict[str, RunMeta]:
        raw: dict[Any, Any] = await self._redis.hgetall(RUNS)
        # fields another version of sundial wrote and this one does not know are ignored (an upgrade)
        return {
            str(run_id): RunMeta(**{k: v for k, v in json.loads(value).items() if k in _FIELDS})
            for run_id, value in raw.items()
        }

    async def add(self, run_id: str, keys: Sequence[str], *, takeover: bool = False) -> None:
        items = _keys(run_id)[0]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                fields: dict[Any, Any] = {"k": key, "t": "1"} if takeover else {"k": key}
                pipe.xadd(items, fields)
            await pipe.execute()

    async def read(self, run_id: str, consumer: str, parallelism: int, count: int) -> list[Delivery]:
        items, _later, stop = _keys(run_id)
        got = await self._read(keys=[items, stop], args=[GROUP, consumer, parallelism, count])
        return _deliveries(got, takeover=False)

    async def reclaim(self, run_id: str, consumer: str, count: int) -> list[Delivery]:
        items, _later, stop = _keys(run_id)
        if count <= 0 or await self._redis.exists(stop):
            return []
        start = self._cursors.get(run_id, "0-0")
        try:
            got = await self._redis.xautoclaim(items, GROUP, consumer, CLAIM_IDLE_MS, start, count=count)
        except redis.exceptions.ResponseError as err:
            if "NOGROUP" in str(err):
                return []
            raise
        self._cursors[run_id] = str(got[0]) if got and got[0] else "0-0"
        return _deliveries(got[1], takeover=True)

    async def touch(self, run_id: str, consumer: str, entries: Sequence[str]) -> None:
        if not entries:
            return
        try:
            await self._redis.xclaim(_keys(run_id)[0], GROUP, consumer, 0, list(entries), justid=True)
        except redis.exceptions.ResponseError as err:
            if "NOGROUP" not in str(err):
                raise

    async def ack(self, run_id: str, entries: Sequence[str]) -> None:
        if entries:
            await self._ack(keys=[_keys(run_id)[0]], args=[GROUP, *entries])

    async def later(self, run_id: str, entry: str, key: str, due: float) -> None:
        items, later, _stop = _keys(run_id)
        await self._later(keys=[items, later], args=[GROUP, entry, key, due])

    async def promote(self, run_id: str, now: float) -> int:
        return int(await self._promote(keys=list(_keys(run_id)), args=[now]))

    async def counts(self, run_id: str) -> tuple[int, int, int] | None:
        items, later, _stop = _keys(run_id)
        if not await self._redis.exists(items):
            return None
        try:  # one transaction: a retry promoted in between never makes a busy queue look empty
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xlen(items)
                pipe.zcard(later)
                pipe.xpending(items, GROUP)
                length, delayed, pending_info = await pipe.execute()
        except redis.exceptions.ResponseError:
            return None  # the stream exists without its group: recreated by a stray write
        pending = int(pending_info["pending"])
        return max(0, int(length) - pending), pending, int(delayed)

    async def stop(self, run_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_keys(run_id)[2], "1", ex=86400)
            pipe.hdel(RUNS, run_id)
            await pipe.execute()

    async def remove(self, run_id: str) -> None:
        self._cursors.pop(run_id, None)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(RUNS, run_id)
            pipe.delete(*_keys(run_id))
            await pipe.execute()
