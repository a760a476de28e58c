"""In-process leases for a single replica without Redis (the embedded default)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


class LocalLeases:
    """Same semantics as Redis leases within one process; useless across replicas, hence the warning."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._held: dict[str, tuple[str, float]] = {}
        self._members: dict[str, dict[str, float]] = {}

    def _live(self, key: str) -> tuple[str, float] | None:
        entry = self._held.get(key)
        if entry is not None and entry[1] <= self._now():
            del self._held[key]
            return None
        return entry

    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        self._held[key] = (token, self._now() + ttl)
        if len(self._held) > 10_000:
            self._sweep()
        return True

    async def acquire_many(self, items: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        return [await self.acquire(key, token, ttl) for key, token in items]

    async def renew_many(self, items: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        return [await self.renew(key, token, ttl) for key, token in items]

    async def release_many(self, items: Sequence[tuple[str, str]]) -> None:
        for key, token in items:
            await self.release(key, token)

    async def swap_many(self, items: Sequence[tuple[str, str, str]], ttl: float) -> list[bool]:
        out: list[bool] = []
        for key, old, new in items:
            entry = self._live(key)
            ok = entry is not None and entry[0] == old
            if ok:
                self._held[key] = (new, self._now() + ttl)
            out.append(ok)
        return out

    async def holders(self, keys: Sequence[str]) -> list[str | None]:
        return [await self.holder(key) for key in keys]

    async def put(self, key: str, token: str, ttl: float) -> None:
        self._held[key] = (token, self._now() + ttl)

    async def renew(self, key: str, token: str, ttl: float) -> bool:
        entry = self._live(key)
        if entry is None or entry[0] != token:
            return False
        self._held[key] = (token, self._now() + ttl)
        return True

    async def release(self, key: str, token: str) -> bool:
        entry = self._live(key)
        if entry is None or entry[0] != token:
            return False
        del self._held[key]
        return True

    async def members(self, key: str, name: str, ttl: float) -> list[str]:
        now = self._now()
        live = {m: until for m, until in self._members.get(key, {}).items() if until > now}
        live[name] = now + ttl
        self._members[key] = live
        return sorted(live)

    async def leave(self, key: str, name: str) -> None:
        self._members.get(key, {}).pop(name, None)

    async def holder(self, key: str) -> str | None:
        entry = self._live(key)
        return None if entry is None else entry[0]

    async def set_flag(self, key: str, ttl: float) -> None:
        self._held[key] = ("1", self._now() + ttl)

    async def close(self) -> None:
        """Nothing to release: leases die with the process (or live on for others sharing them)."""

    def _sweep(self) -> None:
        now = self._now()
        for key in [k for k, (_, until) in self._held.items() if until <= now]:
            del self._held[key]
