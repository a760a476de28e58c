"""Leases in Redis, shared by all replicas: SET NX PX to take, Lua compare-and-set to renew/release."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


_ACQUIRE_MANY = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('set', key, ARGV[i + 1], 'NX', 'PX', ARGV[1]) and 1 or 0
end
return out
"""

_RENEW_MANY = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[i + 1] then
    out[i] = redis.call('pexpire', key, ARGV[1])
  else
    out[i] = 0
  end
end
return out
"""

_RELEASE_MANY = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[i] then
    n = n + redis.call('del', key)
  end
end
return n
"""

_SWAP_MANY = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[2 * i] then
    redis.call('set', key, ARGV[2 * i + 1], 'PX', ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

_MEMBERS = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
return redis.call('zrange', KEYS[1], 0, -1)
"""


def reconnecting() -> dict[str, object]:
    """A pooled connection a Redis restart closed fails once, then a fresh one is used.

    Retried only on connection errors, a few times with a short backoff: most such failures
    happen before the command reaches Redis (the socket was already closed); a command that did
    run twice is harmless here (taking a lease one holds, or a journal entry applied twice).
    """
    return {
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        "retry_on_error": [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    }


# One script call per chunk: a thousand leases cost one command's client overhead, not a
# thousand. (Multi-key scripts need a single Redis, not Redis Cluster.)
CHUNK = 2000


class RedisLeases:
    """The multi-replica backend; a lost Redis never yields duplicates because the database fences."""

    def __init__(self, url: str) -> None:
        # A blocking pool: a burst of callers waits for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            health_check_interval=30,
            max_connections=32,
            timeout=30,
            **reconnecting(),
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._acquire_many = self._redis.register_script(_ACQUIRE_MANY)
        self._renew_many = self._redis.register_script(_RENEW_MANY)
        self._release_many = self._redis.register_script(_RELEASE_MANY)
        self._swap_many = self._redis.register_script(_SWAP_MANY)
        self._members = self._redis.register_script(_MEMBERS)

    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        return bool(await self._redis.set(key, token, nx=True, px=max(1, int(ttl * 1000))))

    async def acquire_many(self, items: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        out: list[bool] = []
        for i in range(0, len(items), CHUNK):
            chunk = items[i : i + CHUNK]
            result = await self._acquire_many(
                keys=[k for k, _ in chunk], args=[max(1, int(ttl * 1000)), *(t for _, t in chunk)]
            )
            out.extend(bool(r) for r in result)
        return out

    async def renew_many(self, items: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        out: list[bool] = []
        for i in range(0, len(items), CHUNK):
            chunk = items[i : i + CHUNK]
            result = await self._renew_many(
                keys=[k for k, _ in chunk], args=[max(1, int(ttl * 1000)), *(t for _, t in chunk)]
            )
            out.extend(bool(r) for r in result)
        return out

    async def release_many(self, items: Sequence[tuple[str, str]]) -> None:
        for i in range(0, len(items), CHUNK):
            chunk = items[i : i + CHUNK]
            await self._release_many(keys=[k for k, _ in chunk], args=[t for _, t in chunk])

    async def swap_many(self, items: Sequence[tuple[str, str, str]], ttl: float) -> list[bool]:
        out: list[bool] = []
        for i in range(0, len(items), CHUNK):
            chunk = items[i : i + CHUNK]
            args: list[str | int] = [max(1, int(ttl * 1000))]
            for _, old, new in chunk:
                args += [old, new]
            result = await self._swap_many(keys=[k for k, _, _ in chunk], args=args)
            out.extend(bool(r) for r in result)
        return out

    async def holders(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        values = await self._redis.mget(list(keys))
        return [None if v is None else str(v) for v in values]

    async def put(self, key: str, token: str, ttl: float) -> None:
        await self._redis.set(key, token, px=max(1, int(ttl * 1000)))

    async def renew(self, key: str, token: str, ttl: float) -> bool:
        return bool(await self._renew(keys=[key], args=[token, max(1, int(ttl * 1000))]))

    async def release(self, key: str, token: str) -> bool:
        return bool(await self._release(keys=[key], args=[token]))

    async def holder(self, key: str) -> str | None:
        value = await self._redis.get(key)
        return None if value is None else str(value)

    async def set_flag(self, key: str, ttl: float) -> None:
        await self._redis.set(key, "1", px=max(1, int(ttl * 1000)))

    async def members(self, key: str, name: str, ttl: float) -> list[str]:
        # Redis' clock, not ours: replicas with skewed clocks still agree on who is alive
        result = await self._members(keys=[key], args=[name, max(1, int(ttl * 1000))])
        return [str(m) for m in result]

    async def leave(self, key: str, name: str) -> None:
        await self._redis.zrem(key, name)

    async def close(self) -> None:
        await self._redis.aclose()
