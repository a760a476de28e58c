"""The one loop for every lease this replica holds, a few Redis round trips per tick at any load.

Heartbeat and membership (who shares the slots), batched releases, renewal of the running leases
of long attempts, and cross-replica cancellation: another replica's ``Replace`` sets a marker that
this loop finds and turns into a cancel of the local attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from sundial.engine.core import Core
from sundial.engine.sharding import Shards
from sundial.engine.tracked import Attempt
from sundial.leases import keys
from sundial.retrying import log_fault

log = logging.getLogger("sundial.engine")


class Leasing:
    def __init__(self, core: Core, shards: Shards) -> None:
        self.core = core
        self.shards = shards
        self.on_cancel_requested: Callable[[Attempt], None] = lambda attempt: None
        """Set by the engine: what to do with a local attempt another replica asked to cancel."""
        self._releases: list[tuple[str, str]] = []
        self._wakeup = asyncio.Event()
        self._beat = ""
        """The heartbeat's last value: this incarnation's token and when it beat."""

    @property
    def period(self) -> float:
        return min(self.core.settings.lease_ttl_seconds / 3, 1.0)

    def release_soon(self, item: tuple[str, str]) -> None:
        """Give back a running lease within this loop iteration: attempts ending together share a call.

        Not at the next tick: a lease still held after its attempt ended would make the next slot
        (on another replica) a ``ConcurrencyForbid`` with nothing running.
        """
        self._releases.append(item)
        self._wakeup.set()

    async def release_now(self) -> None:
        """Give back every queued lease at once (a running lease the next slot needs)."""
        releases, self._releases = self._releases, []
        await self.core.leases.release_many(releases)

    async def run(self) -> None:
        core = self.core
        ttl = core.settings.lease_ttl_seconds
        last_renew = float("-inf")
        while True:
            await core.clock.wait(self._wakeup, 0.1)
            self._wakeup.clear()
            try:
                await self.release_now()
                now = core.clock.monotonic()
                if now - last_renew < self.period:
                    continue
                last_renew = now
                await self.tick(ttl)
            except Exception as err:
                log_fault("lease maintenance (retrying)", err)
                await core.clock.sleep(self.period)

    async def tick(self, ttl: float) -> None:
        """Heartbeat, membership, renewals and cancel markers: once per period."""
        core = self.core
        beat = keys.beat(core.token, core.clock.now())
        await core.leases.put(keys.replica(core.replica), beat, ttl)
        self._beat = beat
        if self.shards.update(await core.leases.members(keys.members(), core.replica, ttl)):
            log.info("replicas sharing the slots: %s", ", ".join(self.shards.members))
            core.status.share(len(self.shards.members))
        cutoff = core.clock.now() - timedelta(seconds=self.period)
        held = [
            a
            for t in core.with_active.values()
            for a in t.active.values()
            if a.running_lease is not None and a.started < cutoff
        ]
        if not held:
            return
        leases = [a.running_lease for a in held if a.running_lease]
        renewed = await core.leases.renew_many(leases, ttl)
        lost = [lease for lease, ok in zip(leases, renewed, strict=True) if not ok]
        if lost:  # Redis restarted or was flushed: the attempts still run here, so hold their leases again
            again = await core.leases.acquire_many(lost, ttl)
            log.warning(
                "re-took %d of %d running leases Redis had lost (%d taken by others meanwhile)",
                sum(again),
                len(lost),
                len(lost) - sum(again),
            )
        markers = [a for a in held if a.cancel_marker]
        flags = await core.leases.holders([a.cancel_marker for a in markers if a.cancel_marker])
        for a, flag in zip(markers, flags, strict=True):
            if flag and a.task is not None and not a.task.done():
                self.on_cancel_requested(a)

    async def shutdown(self) -> None:
        """Give back what is queued, the heartbeat and the membership: others take over at once."""
        core = self.core
        await core.leases.release_many([*self._releases, (keys.replica(core.replica), self._beat)])
        self._releases = []
        await core.leases.leave(keys.members(), core.replica)
