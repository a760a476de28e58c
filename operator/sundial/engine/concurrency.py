"""``concurrencyPolicy`` at the fire instant, across replicas.

``Forbid``: a slot is skipped while an attempt of the same CronConfig runs anywhere (the running
lease, one Redis round trip for a whole batch). ``Replace``: what runs is cancelled, here directly,
on another replica through a cancel marker its lease loop finds. ``Allow``: nothing to check.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

from sundial.engine.core import Core
from sundial.engine.tracked import Attempt, SlotWork, Tracked
from sundial.leases import keys
from sundial.leases.keys import parse_beat
from sundial.models.runs import RunReason, Trigger
from sundial.models.spec import ConcurrencyPolicy
from sundial.retrying import is_transient, log_fault

log = logging.getLogger("sundial.engine")

UNDECIDED: Final = "undecided"
"""The gate cannot tell yet whether an earlier attempt still runs (its holder has not beaten since)."""
Decision = RunReason | str | None


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
        self.running_in_history: Callable[[list[str]], Awaitable[set[str]]] = _nothing_running
        self.ended_in_history: Callable[
            [list[tuple[str, datetime, int]]], Awaitable[set[tuple[str, datetime, int]]]
        ] = _none_ended
        """Set by the engine: which of these (uid, slot, attempt) attempts have a final record."""
        """Set by the engine: CronConfigs with a Running attempt in the run history (Redis is down)."""

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

    def drop(self, w: SlotWork) -> None:
        """Give back the running lease the gate took for an attempt that is not launched after all."""
        lease, _ = self.guard(w)
        if lease is not None:
            self.core.spawn(self._release(lease), name="sundial-release")

    async def _release(self, lease: tuple[str, str]) -> None:
        try:
            await self.core.leases.release(*lease)
        except Exception as err:
            log_fault("giving back a running lease (it expires on its own)", err)

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

    async def gate(self, work: list[SlotWork], at: datetime | None = None) -> list[Decision]:
        """Per attempt: ``None`` to launch it, a skip reason, or :data:`UNDECIDED` (ask again soon).

        ``ConcurrencyForbid`` only when an earlier attempt really runs: here, in work its job type
        follows, or on a replica whose heartbeat came after this slot's instant. A lease whose
        holder is dead (its replica's heartbeat is gone or belongs to a newer incarnation) is
        broken and the slot runs; a holder that has not beaten since ``at`` (the first time the
        slot asked, default now) is undecided.
        """
        since = int((at or self.core.clock.now()).timestamp() * 1000)
        reasons: list[Decision] = [None] * len(work)
        forbid = [i for i, w in enumerate(work) if _policy(w) == ConcurrencyPolicy.FORBID]
        for i in forbid:
            w = work[i]
            if any(_newer(a.slot, a.trigger, w) for a in w.tracked.active.values()):
                reasons[i] = RunReason.MISSED  # a later slot runs already: only the newest may run
            elif w.tracked.active or self.busy_outside(w.tracked):
                reasons[i] = RunReason.CONCURRENCY_FORBID
        free = [i for i in forbid if reasons[i] is None]
        if free:
            for i, decision in zip(free, await self._forbid([work[i] for i in free], since), strict=True):
                reasons[i] = decision
        for w in work:
            if _policy(w) == ConcurrencyPolicy.REPLACE:
                try:
                    await self._replace(w)
                except Exception as err:
                    if not is_transient(err):
                        raise
                    log_fault(f"[{w.tracked.key}] cancelling what runs on other replicas (Replace)", err)
        return reasons

    async def _forbid(self, work: list[SlotWork], since: int) -> list[Decision]:
        leases, ttl = self.core.leases, self.core.settings.lease_ttl_seconds
        try:
            got = await leases.acquire_many(
                [(keys.running(w.tracked.uid), self.running_token(w)) for w in work], ttl
            )
        except Exception as err:
            if not is_transient(err):
                raise
            log_fault(f"checking Forbid of {len(work)} slots in Redis (asking the run history)", err)
            try:
                running = await self.running_in_history([w.tracked.uid for w in work])
            except Exception as again:
                if not is_transient(again):
                    raise
                log_fault("asking the run history what runs (not run: StoreUnavailable)", again)
                return [RunReason.STORE_UNAVAILABLE] * len(work)
            # this replica's own attempts are known exactly (tracked.active, checked before): the
            # history answers for the other replicas' only (its rows lag the outcomes a little)
            return [RunReason.CONCURRENCY_FORBID if w.tracked.uid in running else None for w in work]
        decisions: list[Decision] = [None] * len(work)
        held = [i for i, ok in enumerate(got) if not ok]
        if not held:
            return decisions
        try:
            holders = await leases.holders([keys.running(work[i].tracked.uid) for i in held])
            tokens = [(h or "").split("|", 1)[0] for h in holders]
            names = sorted({t.rsplit(":", 1)[0] for t in tokens if t and t != self.core.token})
            beats = dict(zip(names, await leases.holders([keys.replica(n) for n in names]), strict=True))
        except Exception as err:
            if not is_transient(err):
                raise
            log_fault(f"judging {len(held)} running leases in Redis (asked again shortly)", err)
            return [UNDECIDED if i in held else d for i, d in enumerate(decisions)]
        holder_of = dict(zip(held, holders, strict=True))
        stale: list[int] = []
        alive: list[int] = []
        freed: list[int] = []
        for i, holder, token in zip(held, holders, tokens, strict=True):
            if holder is None:
                freed.append(i)  # released a moment ago: try to take it once more
            elif token == self.core.token:
                # our own token with no attempt running here: a finished attempt's lease, not
                # released yet (releases are batched), so it is free
                stale.append(i)
            else:
                beat = parse_beat(beats.get(token.rsplit(":", 1)[0]))
                if beat is None or beat[0] != token:
                    stale.append(i)  # its replica is gone, or restarted since
                elif beat[1] >= since:
                    alive.append(i)
                else:
                    decisions[i] = UNDECIDED
        # an alive holder's attempt may have ended already (its release is on its way): the run
        # history says so, and then the slot runs instead of being skipped for nothing
        ended = await self._ended([_attempt_of(holder_of[i]) for i in alive])
        for i in alive:
            holding = _attempt_of(holder_of[i])
            if holding in ended:
                stale.append(i)
            elif holding is not None and _newer(holding[1], Trigger.SCHEDULE, work[i]):
                decisions[i] = RunReason.MISSED  # a later slot took it while this one waited
            else:
                decisions[i] = RunReason.CONCURRENCY_FORBID
        # one round trip for every lease broken or freed: a stale lease is handed straight to the
        # slot (only if the stale holder still holds it), a freed one taken if still free; a slot
        # that loses either race is judged again shortly, its new holder like any other
        try:
            swapped = await leases.swap_many(
                [
                    (
                        keys.running(work[i].tracked.uid),
                        holder_of[i] or "",
                        self.running_token(work[i]),
                    )
                    for i in stale
                ],
                ttl,
            )
            taken = (
                await leases.acquire_many(
                    [(keys.running(work[i].tracked.uid), self.running_token(work[i])) for i in freed], ttl
                )
                if freed
                else []
            )
        except Exception as err:
            if not is_transient(err):
                raise
            log_fault(
                f"taking over {len(stale) + len(freed)} stale running leases (asked again shortly)", err
            )
            for i in stale + freed:
                decisions[i] = UNDECIDED
            return decisions
        for i, ok in zip(stale + freed, [*swapped, *taken], strict=True):
            if ok:
                log.debug("[%s] running lease of %s taken over", work[i].tracked.key, holder_of[i])
            else:
                decisions[i] = UNDECIDED
        return decisions

    async def _ended(
        self, attempts: list[tuple[str, datetime, int] | None]
    ) -> set[tuple[str, datetime, int]]:
        wanted = [a for a in attempts if a is not None]
        if not wanted:
            return set()
        try:
            return await self.ended_in_history(wanted)
        except Exception as err:
            if not is_transient(err):
                raise
            log_fault("asking the run history whether attempts ended (taken as running)", err)
            return set()

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


async def _nothing_running(uids: list[str]) -> set[str]:
    return set()


async def _none_ended(attempts: list[tuple[str, datetime, int]]) -> set[tuple[str, datetime, int]]:
    return set()


def _newer(slot: datetime, trigger: str, w: SlotWork) -> bool:
    """Whether an attempt of a later slot (not a manual run) holds the CronConfig: ``w`` was overtaken.

    A slot still waiting on the gate when its successor already runs was not skipped for an
    overlap with an earlier attempt but for being late (``Missed``): only the newest slot runs.
    """
    scheduled = (Trigger.SCHEDULE, Trigger.CATCH_UP)
    return w.trigger in scheduled and trigger != Trigger.MANUAL and slot > w.slot


def _attempt_of(holder: str | None) -> tuple[str, datetime, int] | None:
    """(uid, slot, attempt) a running lease's value names: ``token|uid:slot ms:attempt``."""
    if not holder or "|" not in holder:
        return None
    try:
        uid, ms, attempt = holder.split("|", 1)[1].rsplit(":", 2)
        return uid, datetime.fromtimestamp(int(ms) / 1000, UTC), int(attempt)
    except ValueError:
        return None
