"""Leases in Redis, shared by all replicas: SET NX PX to take, Lua compare-and-set to renew/release."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

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


class RedisLeases:
    """The multi-replica backend; a lost Redis never yields duplicates because the database fences."""

    def __init__(self, url: str) -> None:
        # A blocking pool: a burst of callers waits for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, decode_responses=True, health_check_interval=30, max_connections=32, timeout=30
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)

    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        return bool(await self._redis.set(key, token, nx=True, px=max(1, int(ttl * 1000))))

    async def acquire_many(self, items: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        if not items:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, token in items:
                pipe.set(key, token, nx=True, px=max(1, int(ttl * 1000)))
            results = await pipe.execute()
        return [bool(r) for r in results]

    async def renew_many(self, items: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        if not items:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, token in items:
                await self._renew(keys=[key], args=[token, max(1, int(ttl * 1000))], client=pipe)
            results = await pipe.execute()
        return [bool(r) for r in results]

    async def release_many(self, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, token in items:
                await self._release(keys=[key], args=[token], client=pipe)
            await pipe.execute()

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

    async def close(self) -> None:
        await self._redis.aclose()
