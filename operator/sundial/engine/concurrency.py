"""``concurrencyPolicy`` at the fire instant, across replicas.

``Forbid``: a slot is skipped while an attempt of the same CronConfig runs anywhere (the running
lease, one Redis round trip for a whole batch). ``Replace``: what runs is cancelled, here directly,
on another replica through a cancel marker its lease loop finds. ``Allow``: nothing to check.
"""

from __future__ import annotations

from collections.abc import Callable

from sundial.engine.core import Core
from sundial.engine.tracked import Attempt, SlotWork, Tracked
from sundial.leases import keys
from sundial.models.runs import RunReason, Trigger
from sundial.models.spec import ConcurrencyPolicy


def _policy(w: SlotWork) -> ConcurrencyPolicy | None:
    """The policy that applies to an attempt; ``None`` for dry runs (nothing runs to overlap)."""
    spec = w.tracked.spec
    if spec is None or spec.dry_run:
        return None
    return spec.concurrency_policy


class Concurrency:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.cancel_local: Callable[[Attempt, RunReason], None] = lambda attempt, reason: None
        """Set by the engine: cancel an attempt running on this replica."""
        self.busy_outside: Callable[[Tracked], bool] = lambda tracked: False
        """Set by the engine: work of the CronConfig still runs outside every replica (its job type knows)."""

    def running_token(self, w: SlotWork) -> str:
        """The running lease's owner: this incarnation, plus the attempt (the cancel marker's key)."""
        return f"{self.core.token}|{w.tracked.uid}:{int(w.slot.timestamp() * 1000)}:{w.attempt}"

    def guard(self, w: SlotWork) -> tuple[tuple[str, str] | None, str | None]:
        """(running lease, cancel marker key) an attempt holds while it runs, if its policy needs one."""
        policy = w.tracked.spec.concurrency_policy if w.tracked.spec else ConcurrencyPolicy.ALLOW
        if policy == ConcurrencyPolicy.ALLOW or w.trigger == Trigger.MANUAL:
            return None, None
        token = self.running_token(w)
        return (keys.running(w.tracked.uid), token), keys.cancel(token.rsplit("|", 1)[-1])

    async def guard_if_free(self, w: SlotWork) -> tuple[tuple[str, str] | None, str | None]:
        """The running lease of an attempt that runs whatever else does, if the lease is free.

        A Manual run always runs, and a resumed attempt (its owner died) is already running; under
        Forbid/Replace they also hold the running lease if free, so a Forbid slot on another
        replica is skipped while they run and a Replace slot there cancels them.
        """
        policy = _policy(w)
        if policy not in (ConcurrencyPolicy.FORBID, ConcurrencyPolicy.REPLACE):
            return None, None
        token = self.running_token(w)
        key = keys.running(w.tracked.uid)
        if not await self.core.leases.acquire(key, token, self.core.settings.lease_ttl_seconds):
            return None, None  # something runs already: the manual run goes ahead without it
        return (key, token), keys.cancel(token.rsplit("|", 1)[-1])

    async def replaced(self, w: SlotWork) -> bool:
        """Under ``Replace``, whether another attempt holds the running lease.

        Asked of an attempt resumed after its owner died: an attempt that started while nobody
        followed this one is newer, and a newer attempt replaces an older one.
        """
        if _policy(w) != ConcurrencyPolicy.REPLACE:
            return False
        holder = await self.core.leases.holder(keys.running(w.tracked.uid))
        own = self.running_token(w).rsplit("|", 1)[-1]
        return holder is not None and holder.rsplit("|", 1)[-1] != own

    async def gate(self, work: list[SlotWork]) -> list[RunReason | None]:
        """Per attempt a skip reason, or ``None`` to launch it."""
        reasons: list[RunReason | None] = [None] * len(work)
        ttl = self.core.settings.lease_ttl_seconds
        forbid = [i for i, w in enumerate(work) if _policy(w) == ConcurrencyPolicy.FORBID]
        for i in forbid:
            if work[i].tracked.active or self.busy_outside(work[i].tracked):
                reasons[i] = RunReason.CONCURRENCY_FORBID
        free = [i for i in forbid if reasons[i] is None]
        got = await self.core.leases.acquire_many(
            [(keys.running(work[i].tracked.uid), self.running_token(work[i])) for i in free], ttl
        )
        for i, ok in zip(free, got, strict=True):
            if not ok:
                reasons[i] = RunReason.CONCURRENCY_FORBID
        for w in work:
            if _policy(w) == ConcurrencyPolicy.REPLACE:
                await self._replace(w)
        return reasons

    async def _replace(self, w: SlotWork) -> None:
        leases, key = self.core.leases, keys.running(w.tracked.uid)
        ttl = self.core.settings.lease_ttl_seconds
        for attempt in list(w.tracked.active.values()):
            self.cancel_local(attempt, RunReason.REPLACED)
        holder = await leases.holder(key)
        if holder and not holder.startswith(self.core.token):
            await leases.set_flag(keys.cancel(holder.rsplit("|", 1)[-1]), ttl * 3)
        await leases.release(key, holder or "")
        await leases.acquire(key, self.running_token(w), ttl)
