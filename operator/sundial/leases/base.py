"""The lease interface every backend implements (Redis for replicas, in-process for one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Leases(Protocol):
    """Owner-token leases with a TTL; all times in seconds."""

    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        """Take the lease if nobody holds it."""

    async def acquire_many(self, items: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        """Try many (key, token) leases in one round trip (a whole due batch of slots)."""

    async def renew_many(self, items: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        """Renew many (key, token) leases in one round trip."""

    async def release_many(self, items: Sequence[tuple[str, str]]) -> None:
        """Release many (key, token) leases in one round trip."""

    async def swap_many(self, items: Sequence[tuple[str, str, str]], ttl: float) -> list[bool]:
        """Per (key, old, new): hand the lease from ``old`` to ``new`` if ``old`` still holds it."""

    async def holders(self, keys: Sequence[str]) -> list[str | None]:
        """Current owners of many keys in one round trip."""

    async def renew(self, key: str, token: str, ttl: float) -> bool:
        """Extend the lease; False if it was lost (expired or taken)."""

    async def release(self, key: str, token: str) -> bool:
        """Drop the lease only if ``token`` still owns it."""

    async def holder(self, key: str) -> str | None:
        """The current owner token, if any."""

    async def set_flag(self, key: str, ttl: float) -> None:
        """Set a short-lived marker (cancellation requests)."""

    async def put(self, key: str, token: str, ttl: float) -> None:
        """Set unconditionally (a replica's own heartbeat)."""

    async def members(self, key: str, name: str, ttl: float) -> list[str]:
        """Heartbeat ``name`` into the membership ``key`` and return every live member."""

    async def leave(self, key: str, name: str) -> None:
        """Drop ``name`` from the membership at once (clean shutdown)."""

    async def close(self) -> None: ...
