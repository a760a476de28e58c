"""Lease semantics on both backends: a real redis-server and the in-process fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from sundial.leases.base import Leases
from sundial.leases.local import LocalLeases
from sundial.leases.redis import RedisLeases


@pytest.fixture(params=["redis", "local"])
async def leases(request: pytest.FixtureRequest) -> AsyncIterator[Leases]:
    backend: Leases = (
        RedisLeases(request.getfixturevalue("redis_url")) if request.param == "redis" else LocalLeases()
    )
    yield backend
    await backend.close()


async def test_only_the_owner_renews_and_releases(leases: Leases) -> None:
    key = f"test:{id(leases)}:one"
    assert await leases.acquire(key, "a", 5)
    assert not await leases.acquire(key, "b", 5)
    assert not await leases.renew(key, "b", 5)
    assert not await leases.release(key, "b")
    assert await leases.holder(key) == "a"
    assert await leases.renew(key, "a", 5)
    assert await leases.release(key, "a")
    assert await leases.acquire(key, "b", 5)


async def test_a_lease_expires_and_can_be_taken_over(leases: Leases) -> None:
    key = f"test:{id(leases)}:ttl"
    assert await leases.acquire(key, "dead", 0.2)
    await asyncio.sleep(0.3)
    assert await leases.holder(key) is None
    assert await leases.acquire(key, "alive", 5)
    assert not await leases.renew(key, "dead", 5)


async def test_batches_decide_each_key_on_its_own(leases: Leases) -> None:
    prefix = f"test:{id(leases)}:batch"
    taken = [(f"{prefix}:{i}", "a") for i in range(0, 3000, 2)]
    assert all(await leases.acquire_many(taken, 5))
    asked = [(f"{prefix}:{i}", "b") for i in range(3000)]
    won = await leases.acquire_many(asked, 5)
    assert won == [i % 2 == 1 for i in range(3000)]
    assert await leases.renew_many(asked[:4], 5) == [False, True, False, True]
    await leases.release_many(asked)  # only b's keys go
    holders = await leases.holders([k for k, _ in asked[:4]])
    assert holders == ["a", None, "a", None]


async def test_a_batch_swap_hands_over_only_leases_the_old_holder_still_holds(leases: Leases) -> None:
    prefix = f"test:{id(leases)}:swap"
    assert all(await leases.acquire_many([(f"{prefix}:{i}", f"old{i % 3}") for i in range(2500)], 5))
    items = [(f"{prefix}:{i}", "old0", "new") for i in range(2500)] + [(f"{prefix}:none", "old0", "new")]
    swapped = await leases.swap_many(items, 0.3)
    assert swapped == [i % 3 == 0 for i in range(2500)] + [False]
    holders = await leases.holders([f"{prefix}:{i}" for i in range(3)] + [f"{prefix}:none"])
    assert holders == ["new", "old1", "old2", None]
    await asyncio.sleep(0.5)  # the swapped lease carries the new TTL
    assert await leases.holder(f"{prefix}:0") is None
    assert await leases.holder(f"{prefix}:1") == "old1"


async def test_membership_expires_silent_replicas(leases: Leases) -> None:
    key = f"test:{id(leases)}:members"
    assert await leases.members(key, "a", 0.3) == ["a"]
    assert sorted(await leases.members(key, "b", 5)) == ["a", "b"]
    await asyncio.sleep(0.4)
    assert await leases.members(key, "b", 5) == ["b"], "a stopped heartbeating"
    await leases.members(key, "c", 5)
    await leases.leave(key, "c")
    assert await leases.members(key, "b", 5) == ["b"]


async def test_scripts_are_loaded_again_after_redis_forgets_them(redis_url: str) -> None:
    """A restarted (or SCRIPT FLUSHed) Redis has no scripts: every Lua call still works."""
    leases = RedisLeases(redis_url)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        key = "test:scripts:one"
        assert await leases.acquire_many([(key, "a")], 5) == [True]
        assert await leases.renew_many([(key, "a")], 5) == [True]
        await admin.script_flush()
        await admin.flushall()  # as an empty restart leaves it
        assert await leases.renew_many([(key, "a")], 5) == [False], "the lease went with the data"
        assert await leases.acquire_many([(key, "a")], 5) == [True]
        await admin.script_flush()
        assert await leases.renew(key, "a", 5)
        await admin.script_flush()
        assert await leases.members("test:scripts:members", "r1", 5) == ["r1"]
        await admin.script_flush()
        await leases.release_many([(key, "a")])
        assert await leases.holder(key) is None
    finally:
        await leases.close()
        await admin.aclose()
