"""The engine of one replica: tracks CronConfigs, fires due slots, claims, executes, records.

Exactly once per slot across active-active replicas:
1. every replica computes the same slots (deterministic schedule and jitter);
2. a Redis lease with an owner token decides which replica handles a slot attempt;
3. the ``UNIQUE (config_uid, scheduled_for, attempt)`` row is written before anything executes,
   so even a lost lease cannot produce two executions;
4. a replica that lost the lease checks after one lease TTL that the winner recorded the slot
   and takes it over otherwise; a running attempt whose owner's lease expired is reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Hashable, Iterable
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from sundial import metrics, validation
from sundial.engine.clock import parse_time, utcnow
from sundial.engine.history import History
from sundial.engine.kube import Kube
from sundial.engine.scheduler import Scheduler
from sundial.engine.sharding import Shards
from sundial.engine.status import StatusPatcher, rfc3339
from sundial.engine.takeover import Takeover
from sundial.engine.tracked import Attempt, SlotWork, Tracked
from sundial.jobs import handler as handler_job
from sundial.jobs import http as http_job
from sundial.jobs import registry
from sundial.jobs.context import Capture, JobContext, JobFailed, RunInfo, redact
from sundial.leases import keys
from sundial.leases.base import Leases
from sundial.models.runs import RunStatus, Trigger
from sundial.models.spec import ConcurrencyPolicy
from sundial.scheduling import jitter_offset, plan_missed
from sundial.settings import Settings
from sundial.store.records import NewRun, RunUpdate

log = logging.getLogger("sundial.engine")
RUN_NOW = "sundial.io/run-now"


class Runtime:
    def __init__(
        self, settings: Settings, *, kube: Kube, history: History, leases: Leases, redis_shared: bool
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.history = history
        self.leases = leases
        self.redis_shared = redis_shared
        self.replica = settings.replica
        self.token = f"{settings.replica}:{uuid.uuid4().hex[:12]}"
        self.status = StatusPatcher(kube, qps=settings.status_qps, min_interval=settings.status_min_interval)
        self.scheduler = Scheduler(self._on_due)
        self.shards = Shards(settings.replica)
        self.tracked: dict[str, Tracked] = {}
        self._intake: dict[str, Tracked] = {}
        self._intake_wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._services: dict[str, asyncio.Task[Any]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self.takeover = Takeover(self)
        self._releases: list[tuple[str, str]] = []
        self._lease_wakeup = asyncio.Event()
        self._born = utcnow()
        self._with_active: dict[str, Tracked] = {}
        self._claimed: dict[uuid.UUID, tuple[SlotWork, NewRun]] = {}
        """Slots leased and recorded (Pending) ahead of their fire time, not fired yet."""
        self._fire_timers: set[asyncio.TimerHandle] = set()
        self._retries: dict[uuid.UUID, tuple[SlotWork, NewRun, asyncio.TimerHandle | None]] = {}
        """Retry attempts recorded Pending, waiting for their backoff to end."""
        self._recent_retries: dict[uuid.UUID, float] = {}
        """Retries fired in the last minute: their rows may still read Pending until the flush."""
        """CronConfigs with attempts running here: the lease loop walks these, not all 10,000."""

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        released = await self.history.call(self.history.store.release_replica_claims, self.replica)
        if released:
            log.warning("gave back %d slots a previous run of replica %s claimed", released, self.replica)
        self._session = aiohttp.ClientSession()
        self.history.start()
        for name, coro in (
            ("scheduler", self.scheduler.run()),
            ("status", self.status.run()),
            ("intake", self._intake_loop()),
            ("reaper", self.takeover.run()),
            ("leases", self._lease_loop()),
        ):
            self._services[name] = asyncio.create_task(coro, name=f"sundial-{name}")

    async def stop(self) -> None:
        """Stop firing, let attempts finish within the grace period, flush history and status."""
        self._stopping = True
        # nothing new fires, no takeovers: the scheduler, intake and reaper stop first
        for name in ("scheduler", "intake", "reaper"):
            self._services[name].cancel()
        await self._unclaim_unfired()
        running = [a.task for t in self.tracked.values() for a in t.active.values() if a.task]
        if running:
            log.info(
                "waiting up to %.0fs for %d running attempts",
                self.settings.shutdown_grace_seconds,
                len(running),
            )
            _, pending = await asyncio.wait(running, timeout=self.settings.shutdown_grace_seconds)
            for t in self.tracked.values():
                for a in t.active.values():
                    if a.task in pending:
                        a.cancel_reason = "OperatorShutdown"
                        a.task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        # retries decided by the attempts that just finished: let their rows reach the database
        recording = [t for t in self._tasks if t.get_name().startswith("sundial-retry-")]
        if recording:
            await asyncio.wait(recording, timeout=5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.history.close()
        with contextlib.suppress(Exception):
            await self.leases.release_many([*self._releases, (keys.replica(self.replica), self.token)])
            await self.leases.leave(keys.members(), self.replica)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.status.drain(force=True), timeout=10)
        for task in self._services.values():
            task.cancel()
        await asyncio.gather(*self._services.values(), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        await self.leases.close()
        await self.kube.close()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_crash)
        return task

    # ------------------------------------------------------------------ observing objects
    async def observe(self, body: dict[str, Any], *, deleted: bool = False) -> None:
        """Feed every watch event here; cheap when nothing relevant changed."""
        meta = body.get("metadata") or {}
        uid = meta.get("uid")
        if not uid:
            return
        if deleted:
            await self._forget(uid, meta)
            return
        self.status.observe(uid, body)
        tracked = self.tracked.get(uid)
        generation = int(meta.get("generation") or 0)
        if tracked is None:
            tracked = Tracked(
                uid=uid,
                namespace=meta.get("namespace", ""),
                name=meta.get("name", ""),
                generation=-1,
                created=parse_time(meta.get("creationTimestamp")) or utcnow(),
            )
            self.tracked[uid] = tracked
            self.history.config_seen(uid, tracked.namespace, tracked.name, tracked.created)
        if generation != tracked.generation:
            tracked.generation = generation
            self._apply_spec(tracked, body)
        run_now = (meta.get("annotations") or {}).get(RUN_NOW)
        if run_now and run_now != tracked.run_now and tracked.ready:
            tracked.run_now = run_now
            if tracked.invalid is None:
                self._spawn(self._manual(tracked, run_now), name=f"sundial-manual-{tracked.key}")
        elif run_now and not tracked.ready:
            tracked.pending_run_now = run_now  # fired once intake has read the history

    def _apply_spec(self, tracked: Tracked, body: dict[str, Any]) -> None:
        result = validation.validate_object(body, known_handlers=set(registry.names()))
        raw_spec = body.get("spec")
        spec_json: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
        self.history.version_seen(tracked.uid, tracked.generation, spec_json)
        if isinstance(result, validation.Invalid):
            message = "; ".join(result.problems)
            first_time = tracked.invalid != message
            tracked.invalid, tracked.spec, tracked.schedule = message, None, None
            self.scheduler.cancel(tracked.uid)
            tracked.next_slot = None
            log.warning("[%s] invalid CronConfig: %s", tracked.key, message)
            self._status_conditions(tracked)
            if first_time:
                self._spawn(
                    self.kube.event(body, reason="InvalidSpec", message=message, type_="Warning"),
                    name="sundial-event",
                )
            self._update_gauges(invalid=True)
            return
        was_invalid, tracked.invalid = tracked.invalid is not None, None
        if was_invalid:
            self._update_gauges(invalid=True)
        tracked.spec, tracked.schedule = result.spec, result.schedule
        if not tracked.ready:
            self._intake[tracked.uid] = tracked
            self._intake_wakeup.set()
            return
        self._reschedule(tracked, after=max(utcnow(), tracked.last_slot or tracked.created))

    async def _forget(self, uid: str, meta: dict[str, Any]) -> None:
        tracked = self.tracked.pop(uid, None)
        self._intake.pop(uid, None)
        self.scheduler.cancel(uid)
        self.shards.forget(uid)
        self.status.forget(uid)
        self._update_gauges(invalid=True)
        await self.history.call(self.history.store.mark_deleted, uid, utcnow())
        if tracked:
            log.info("[%s] deleted: firing stopped, history kept", tracked.key)

    # ------------------------------------------------------------------ intake: history, missed slots
    async def _intake_loop(self) -> None:
        """Batch the first look into the history for newly seen CronConfigs (10,000 at start-up)."""
        while True:
            await self._intake_wakeup.wait()
            await asyncio.sleep(0.05)
            self._intake_wakeup.clear()
            batch, self._intake = self._intake, {}
            if not batch:
                continue
            try:
                last = await self.history.last_slots(list(batch))
            except Exception:
                log.exception("reading last slots failed; retrying")
                self._intake.update(batch)
                self._intake_wakeup.set()
                await asyncio.sleep(1)
                continue
            now = utcnow()
            catchup: list[SlotWork] = []
            skipped: list[NewRun] = []
            for uid, tracked in batch.items():
                if self.tracked.get(uid) is not tracked or tracked.spec is None or tracked.schedule is None:
                    continue
                tracked.last_slot = last.get(uid)
                tracked.ready = True
                self._plan_missed(tracked, now, catchup, skipped)
                if tracked.pending_run_now:
                    tracked.run_now, tracked.pending_run_now = tracked.pending_run_now, None
                    self._spawn(self._manual(tracked, tracked.run_now), name="sundial-manual")
            if skipped:
                await self._record_skips(skipped)
            by_config: dict[str, list[SlotWork]] = {}
            for w in catchup:
                by_config.setdefault(w.tracked.uid, []).append(w)
            # One slot each (Skip/RunOnce, or Allow): one batch. Several under Forbid/Replace: in order.
            together = [
                w
                for works in by_config.values()
                for w in works
                if len(works) == 1 or (w.tracked.spec and w.tracked.spec.concurrency_policy == "Allow")
            ]
            if together:
                self._spawn(self._start(together), name="sundial-catchup")
            for works in by_config.values():
                if len(works) > 1 and works[0] not in together:
                    self._spawn(self._catch_up_in_order(works), name="sundial-catchup")

    async def _catch_up_in_order(self, works: list[SlotWork]) -> None:
        """RunAll under Forbid/Replace: missed slots run one after another, oldest first."""
        for w in sorted(works, key=lambda w: w.slot):
            await self._start([w], inline=True)
            running = [a.task for a in w.tracked.active.values() if a.task is not None]
            if running:
                await asyncio.wait(running)
            # the running lease goes back now, not at the lease loop's next tick, or the next
            # slot would find it held and be skipped as ConcurrencyForbid
            releases, self._releases = self._releases, []
            await self.leases.release_many(releases)

    def _plan_missed(
        self, tracked: Tracked, now: datetime, catchup: list[SlotWork], skipped: list[NewRun]
    ) -> None:
        spec, schedule = tracked.spec, tracked.schedule
        assert spec is not None and schedule is not None
        baseline = tracked.last_slot or tracked.created
        if spec.suspend:
            self._reschedule(tracked, after=now)
            return
        plan = plan_missed(
            schedule,
            last_slot=baseline,
            now=now,
            policy=spec.missed_run_policy.value,
            starting_deadline_seconds=spec.starting_deadline_seconds,
        )
        for slot in plan.skip:
            skipped.append(
                self._new_run(tracked, slot, 1, Trigger.CATCH_UP, RunStatus.SKIPPED, reason="Missed")
            )
        for slot in plan.run:
            catchup.append(SlotWork(tracked, slot, 1, Trigger.CATCH_UP))
        newest = max([*plan.run, *plan.skip], default=None)
        if newest is not None:
            tracked.last_slot = max(newest, tracked.last_slot or newest)
        if plan.skip or plan.truncated:
            count = len(plan.skip) + plan.truncated
            self._spawn(
                self._event(
                    tracked,
                    "MissedRuns",
                    f"{count} slot(s) missed while no operator ran, "
                    f"recorded as Skipped (missedRunPolicy {spec.missed_run_policy})",
                    "Warning",
                ),
                name="sundial-event",
            )
        self._reschedule(tracked, after=max(now, tracked.last_slot or now))

    # ------------------------------------------------------------------ scheduling
    def _reschedule(self, tracked: Tracked, *, after: datetime, publish: bool = True) -> None:
        """Set the next fire time; ``publish`` False leaves status to whoever runs the slot."""
        spec, schedule = tracked.spec, tracked.schedule
        self.scheduler.cancel(tracked.uid)
        tracked.next_slot = None
        if spec is None or schedule is None:
            return
        if not spec.suspend:
            nxt = schedule.next_after(after)
            if nxt is not None:
                tracked.next_slot = nxt
                fire = nxt + timedelta(seconds=jitter_offset(tracked.uid, nxt, spec.jitter_seconds))
                # wake up early enough to lease and claim the slot before it is due
                self.scheduler.schedule(tracked.uid, fire.timestamp() - self.settings.lookahead_seconds)
            elif spec.run_at is not None:
                tracked.completed = True
        if publish:
            self._status_conditions(tracked)
        self._update_gauges()

    def _update_gauges(self, *, invalid: bool = False) -> None:
        metrics.SCHEDULED.set(len(self.scheduler))
        if invalid:  # O(n): only when validity may have changed, never per fire
            metrics.INVALID.set(sum(1 for t in self.tracked.values() if t.invalid))

    async def _on_due(self, uids: list[Hashable]) -> None:
        work: list[SlotWork] = []
        for uid in uids:
            tracked = self.tracked.get(str(uid))
            if tracked is None or tracked.next_slot is None or tracked.spec is None:
                continue
            slot = tracked.next_slot
            tracked.last_slot = slot
            self._reschedule(tracked, after=slot, publish=False)
            work.append(SlotWork(tracked, slot, 1, Trigger.SCHEDULE))
        if not work or self._stopping:
            return
        # This replica's share is claimed now; the rest a moment later, and only if the preferred
        # replica has not claimed it by then (it died, or is slow): load spreads over replicas,
        # and a dead one's slots still fire on time while the membership catches up.
        mine = [w for w in work if self.shards.mine(w.tracked.uid)]
        others = [w for w in work if not self.shards.mine(w.tracked.uid)]
        if mine:
            self._spawn(self._start(mine), name="sundial-claim")
        if others:
            asyncio.get_running_loop().call_later(
                self.settings.lookahead_seconds / 2, self._claim_fallback, others
            )

    def _claim_fallback(self, work: list[SlotWork]) -> None:
        if not self._stopping:
            self._spawn(self._start(work), name="sundial-claim-fallback")

    # ------------------------------------------------------------------ claiming
    def _new_run(
        self,
        tracked: Tracked,
        slot: datetime,
        attempt: int,
        trigger: str,
        status: str,
        *,
        reason: str | None = None,
        started: datetime | None = None,
        finished: bool = False,
    ) -> NewRun:
        now = utcnow()
        return NewRun(
            id=uuid.uuid4(),
            config_uid=tracked.uid,
            namespace=tracked.namespace,
            name=tracked.name,
            generation=tracked.generation,
            scheduled_for=slot,
            trigger=str(trigger),
            attempt=attempt,
            status=str(status),
            reason=reason,
            started_at=started,
            replica=self.replica,
            dry_run=bool(tracked.spec and tracked.spec.dry_run) and status == RunStatus.SUCCEEDED,
            finished_at=now if finished else None,
            duration_ms=0 if finished else None,
        )

    async def _record_skips(self, runs: list[NewRun]) -> None:
        try:
            inserted = await self.history.claim(runs)
        except Exception:
            log.exception("recording %d skipped slots failed", len(runs))
            return
        for run in runs:
            if run.id in inserted:
                metrics.RUNS.labels(RunStatus.SKIPPED, run.trigger).inc()
                tracked = self.tracked.get(run.config_uid)
                if tracked is not None:
                    self._status_finished(
                        tracked,
                        run.id,
                        run.scheduled_for,
                        run.attempt,
                        run.trigger,
                        RunStatus.SKIPPED,
                        run.reason,
                        started=None,
                        finished=utcnow(),
                    )

    def _fire_time(self, w: SlotWork) -> datetime:
        spec = w.tracked.spec
        if w.trigger == Trigger.RETRY or spec is None:
            return w.slot
        return w.slot + timedelta(seconds=jitter_offset(w.tracked.uid, w.slot, spec.jitter_seconds))

    async def _start(self, work: list[SlotWork], *, inline: bool = False) -> None:
        """Lease and fence a batch of attempts (ahead of their fire time), then fire each on time.

        The Redis leases and the database row are taken up to ``lookahead_seconds`` early, so at
        the fire instant only in-memory work remains: that is what makes firing sub-second precise.
        """
        now = utcnow()
        t_start = now
        live: list[SlotWork] = []
        skipped: list[NewRun] = []
        for w in work:
            spec = w.tracked.spec
            deadline = spec.starting_deadline_seconds if spec else None
            lateness = (now - self._fire_time(w)).total_seconds()
            if deadline is not None and w.trigger != Trigger.RETRY and lateness > deadline:
                skipped.append(
                    self._new_run(
                        w.tracked,
                        w.slot,
                        w.attempt,
                        w.trigger,
                        RunStatus.SKIPPED,
                        reason="Missed",
                        finished=True,
                    )
                )
            elif spec is not None:
                live.append(w)
        won = await self.leases.acquire_many(
            [(keys.slot(w.tracked.uid, w.slot, w.attempt), self.token) for w in live],
            self.settings.lease_ttl_seconds + self.settings.lookahead_seconds,
        )
        claims: list[tuple[SlotWork, NewRun]] = []
        for w, ok in zip(live, won, strict=True):
            if not ok:
                metrics.LEASE_CONFLICTS.labels("slot").inc()
                check_at = (
                    max(0.0, (self._fire_time(w) - now).total_seconds())
                    + self.settings.lease_ttl_seconds * 1.5
                )
                self.takeover.expect(w, check_at)
                continue
            claims.append((w, self._new_run(w.tracked, w.slot, w.attempt, w.trigger, RunStatus.PENDING)))
        if skipped:
            await self._record_skips(skipped)
        if not claims:
            return
        try:
            inserted = await self.history.claim([run for _, run in claims])
        except Exception:
            log.exception("claiming %d runs failed; they will be retried by takeover", len(claims))
            inserted = set()
            for w, _ in claims:
                self.takeover.expect(w, self.settings.lease_ttl_seconds)
        log.debug("claim n=%d took=%.1fms", len(claims), (utcnow() - t_start).total_seconds() * 1000)
        by_time: dict[datetime, list[tuple[SlotWork, NewRun]]] = {}
        for w, run in claims:
            if run.id not in inserted:
                metrics.LEASE_CONFLICTS.labels("row").inc()
                continue
            by_time.setdefault(self._fire_time(w), []).append((w, run))
        for batch in by_time.values():
            for w, run in batch:
                self._claimed[run.id] = (w, run)
        if self._stopping:  # shutdown began while claiming: give the slots back
            await self._unclaim_unfired()
            return
        loop = asyncio.get_running_loop()
        for at, batch in by_time.items():
            delay = (at - utcnow()).total_seconds()
            if delay <= 0 and inline:  # the caller waits for the launch (catch-up in order)
                await self._fire(batch)
            elif delay <= 0:
                self._spawn(self._fire(batch), name="sundial-fire")
            else:
                # a handful of distinct fire instants within the lookahead: pruning is cheap
                self._fire_timers = {h for h in self._fire_timers if h.when() > loop.time()}
                self._fire_timers.add(loop.call_at(loop.time() + delay, self._fire_soon, batch))

    async def _unclaim_unfired(self) -> None:
        """Shutdown: slots claimed ahead but not yet due are given back, not cancelled.

        Their Pending rows are deleted and their leases released, so another replica takes them
        over (its claim check finds no row) or, with no other replica, the restarted operator sees
        them as missed and applies ``missedRunPolicy``. Nothing is recorded as run that did not run.
        """
        for handle in self._fire_timers:
            handle.cancel()
        self._fire_timers.clear()
        for _, _, retry_timer in self._retries.values():
            if retry_timer is not None:
                retry_timer.cancel()  # their rows stay Pending and are run by whoever comes next
        self._retries.clear()
        claimed, self._claimed = self._claimed, {}
        if not claimed:
            return
        try:
            deleted = await self.history.call(self.history.store.release_claims, list(claimed))
        except Exception:
            log.exception("giving back %d claimed slots failed; the reaper will settle them", len(claimed))
            return
        await self.leases.release_many(
            [(keys.slot(w.tracked.uid, w.slot, w.attempt), self.token) for w, _ in claimed.values()]
        )
        log.info("gave back %d slots claimed ahead of their fire time (%d rows)", len(claimed), deleted)

    def _fire_soon(self, batch: list[tuple[SlotWork, NewRun]]) -> None:
        self._spawn(self._fire(batch), name="sundial-fire")  # _fire logs how late it started

    async def _fire(self, batch: list[tuple[SlotWork, NewRun]]) -> None:
        """The fire instant: concurrency policy, then launch. Claimed rows always get an outcome."""
        t0 = utcnow()
        try:
            await self._fire_inner(batch)
        finally:
            log.debug(
                "fire n=%d late=%.1fms took=%.1fms",
                len(batch),
                (t0 - self._fire_time(batch[0][0])).total_seconds() * 1000,
                (utcnow() - t0).total_seconds() * 1000,
            )

    async def _fire_inner(self, batch: list[tuple[SlotWork, NewRun]]) -> None:
        for _, run in batch:
            self._claimed.pop(run.id, None)
        if self._stopping:
            for w, run in batch:
                self._finish_unstarted(w, run, RunStatus.CANCELLED, "OperatorShutdown")
            return
        live: list[tuple[SlotWork, NewRun]] = []
        for w, run in batch:
            if self.tracked.get(w.tracked.uid) is w.tracked and w.tracked.spec:
                live.append((w, run))
            else:
                self._finish_unstarted(w, run, RunStatus.CANCELLED, "Deleted")
        gates = await self._concurrency_gate([w for w, _ in live])
        for (w, run), blocked in zip(live, gates, strict=True):
            spec = w.tracked.spec
            assert spec is not None
            if blocked:
                self._finish_unstarted(w, run, RunStatus.SKIPPED, blocked)
            elif spec.suspend and w.trigger != Trigger.MANUAL:
                self._finish_unstarted(w, run, RunStatus.SKIPPED, "Suspended")
            elif spec.dry_run:
                self._finish_unstarted(w, run, RunStatus.SUCCEEDED, "DryRun")
            else:
                self._launch(w, run)

    def _finish_unstarted(self, w: SlotWork, run: NewRun, status: RunStatus, reason: str) -> None:
        now = utcnow()
        self.history.finish(
            RunUpdate(
                id=run.id,
                status=str(status),
                reason=reason,
                finished_at=now,
                duration_ms=0,
                result=None,
                error=None,
                logs=None,
                started_at=now if status == RunStatus.SUCCEEDED else None,
                dry_run=status == RunStatus.SUCCEEDED and reason == "DryRun",
            )
        )
        metrics.RUNS.labels(str(status), w.trigger).inc()
        self._status_finished(
            w.tracked,
            run.id,
            w.slot,
            w.attempt,
            w.trigger,
            status,
            reason,
            started=now if status == RunStatus.SUCCEEDED else None,
            finished=now,
        )

    async def _concurrency_gate(self, work: list[SlotWork]) -> list[str | None]:
        """Per attempt a skip reason or None. Forbid: skip while anything runs (one Redis round trip
        for the whole batch); Replace: cancel what runs, here or on another replica."""
        reasons: list[str | None] = [None] * len(work)
        ttl = self.settings.lease_ttl_seconds
        forbid = [
            i
            for i, w in enumerate(work)
            if w.tracked.spec is not None
            and not w.tracked.spec.dry_run
            and w.tracked.spec.concurrency_policy == ConcurrencyPolicy.FORBID
        ]
        for i in forbid:
            if work[i].tracked.active:
                reasons[i] = "ConcurrencyForbid"
        free = [i for i in forbid if reasons[i] is None]
        got = await self.leases.acquire_many(
            [(keys.running(work[i].tracked.uid), self._running_token(work[i])) for i in free], ttl
        )
        for i, ok in zip(free, got, strict=True):
            if not ok:
                reasons[i] = "ConcurrencyForbid"
        for w in work:
            spec = w.tracked.spec
            if spec is not None and not spec.dry_run and spec.concurrency_policy == ConcurrencyPolicy.REPLACE:
                await self._replace(w)
        return reasons

    async def _replace(self, w: SlotWork) -> None:
        key = keys.running(w.tracked.uid)
        ttl = self.settings.lease_ttl_seconds
        for attempt in list(w.tracked.active.values()):
            attempt.cancel_reason = "Replaced"
            if attempt.task:
                attempt.task.cancel()
        holder = await self.leases.holder(key)
        if holder and not holder.startswith(self.token):
            await self.leases.set_flag(keys.cancel(holder.rsplit("|", 1)[-1]), ttl * 3)
        await self.leases.release(key, holder or "")
        await self.leases.acquire(key, self._running_token(w), ttl)

    def _running_token(self, w: SlotWork) -> str:
        return f"{self.token}|{w.tracked.uid}:{int(w.slot.timestamp() * 1000)}:{w.attempt}"

    def _release_running(self, tracked: Tracked, run: NewRun) -> None:
        if tracked.spec is not None and tracked.spec.concurrency_policy != ConcurrencyPolicy.ALLOW:
            w = SlotWork(tracked, run.scheduled_for, run.attempt, run.trigger)
            self._release_soon((keys.running(tracked.uid), self._running_token(w)))

    async def _manual(self, tracked: Tracked, value: str) -> None:
        """One run per distinct ``sundial.io/run-now`` value, fenced by the database across restarts."""
        now = utcnow().replace(microsecond=utcnow().microsecond // 1000 * 1000)
        run = self._new_run(tracked, now, 1, Trigger.MANUAL, RunStatus.RUNNING, started=now)
        if not await self.history.claim_manual(tracked.uid, value, run):
            return
        log.info("[%s] manual run %s for run-now=%r", tracked.key, run.id, value)
        self._launch(SlotWork(tracked, now, 1, Trigger.MANUAL), run)

    # ------------------------------------------------------------------ executing
    def _launch(self, w: SlotWork, run: NewRun) -> None:
        attempt = Attempt(
            run_id=str(run.id),
            slot=w.slot,
            attempt=w.attempt,
            trigger=w.trigger,
            started=run.started_at or utcnow(),
        )
        spec = w.tracked.spec
        if (
            spec is not None
            and spec.concurrency_policy != ConcurrencyPolicy.ALLOW
            and w.trigger != Trigger.MANUAL
        ):
            attempt.running_lease = (keys.running(w.tracked.uid), self._running_token(w))
            attempt.cancel_marker = keys.cancel(self._running_token(w).rsplit("|", 1)[-1])
        w.tracked.active[attempt.run_id] = attempt
        self._with_active[w.tracked.uid] = w.tracked
        attempt.task = self._spawn(self._execute(w, run, attempt), name=f"sundial-run-{run.id}")

    async def _execute(self, w: SlotWork, run: NewRun, attempt: Attempt) -> None:
        tracked, spec = w.tracked, w.tracked.spec
        assert spec is not None
        metrics.ACTIVE.inc()
        started = utcnow()
        self.history.started(run.id, started)
        if w.trigger in (Trigger.SCHEDULE, Trigger.CATCH_UP):
            metrics.FIRE_LAG.observe(max(0.0, (started - self._fire_time(w)).total_seconds()))
        self._status_started(tracked, attempt)
        capture = Capture()
        ctx = JobContext(
            run=RunInfo(
                id=attempt.run_id,
                uid=tracked.uid,
                namespace=tracked.namespace,
                name=tracked.name,
                generation=tracked.generation,
                scheduled_for=w.slot,
                attempt=w.attempt,
                trigger=w.trigger,
            ),
            context=dict(spec.context),
            capture=capture,
            read_secret=lambda name, key: self.kube.read_secret(tracked.namespace, name, key),
        )
        status, reason, result, error = RunStatus.SUCCEEDED, None, None, None
        try:
            async with asyncio.timeout(spec.timeout_seconds):
                result = await self._run_job(ctx)
                await asyncio.sleep(0)  # let the other attempts due now start before this one books
        except TimeoutError:
            status, reason, error = (
                RunStatus.TIMED_OUT,
                "Timeout",
                f"attempt exceeded timeoutSeconds={spec.timeout_seconds}",
            )
        except asyncio.CancelledError:
            status, reason = RunStatus.CANCELLED, attempt.cancel_reason or "Cancelled"
            error = {
                "Replaced": "replaced by a newer run (concurrencyPolicy Replace)",
                "OperatorShutdown": "the operator shut down before the attempt finished",
            }.get(reason, reason)
        except JobFailed as err:
            status, reason, error, result = RunStatus.FAILED, "JobFailed", str(err), err.result
        except Exception as err:
            status, reason, error = RunStatus.FAILED, type(err).__name__, f"{type(err).__name__}: {err}"
        finished = utcnow()
        secrets = ctx.secrets_seen
        self.history.finish(
            RunUpdate(
                id=run.id,
                status=str(status),
                reason=reason,
                finished_at=finished,
                duration_ms=int((finished - started).total_seconds() * 1000),
                result=redact(_jsonable(result), secrets),
                error=redact(error, secrets) if error else None,
                logs=redact(capture.export(), secrets),
                started_at=started,
            )
        )
        metrics.RUNS.labels(str(status), w.trigger).inc()
        metrics.ACTIVE.dec()
        tracked.active.pop(attempt.run_id, None)
        if not tracked.active:
            self._with_active.pop(tracked.uid, None)
        if attempt.running_lease is not None:
            self._release_soon(attempt.running_lease)
        log_fn = log.debug if status == RunStatus.SUCCEEDED else log.warning
        log_fn(
            "[%s] run=%s slot=%s attempt=%d %s%s",
            tracked.key,
            attempt.run_id,
            rfc3339(w.slot),
            w.attempt,
            status,
            f": {redact(error, secrets)}" if error else "",
        )
        self._status_finished(
            tracked,
            run.id,
            w.slot,
            w.attempt,
            w.trigger,
            status,
            reason,
            started=started,
            finished=finished,
            message=redact(error, secrets) if error else None,
        )
        if status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
            self._spawn(
                self._event(
                    tracked,
                    "RunFailed" if status == RunStatus.FAILED else "RunTimedOut",
                    f"run {attempt.run_id} (slot {rfc3339(w.slot)}, attempt {w.attempt}): "
                    f"{redact(error, secrets)}",
                    "Warning",
                ),
                name="sundial-event",
            )
            self._maybe_retry(tracked, w.slot, w.attempt)

    async def _run_job(self, ctx: JobContext) -> Any:
        tracked = self.tracked.get(ctx.run.uid)
        spec = tracked.spec if tracked else None
        if spec is None:
            raise JobFailed("the CronConfig was deleted or became invalid")
        job = spec.job
        if job.http is not None:
            assert self._session is not None
            return await http_job.run(
                job.http.model_dump(by_alias=True, exclude_none=True, mode="json"),
                ctx,
                session=self._session,
                allow_link_local=self.settings.allow_link_local,
            )
        if job.handler is not None:
            return await handler_job.run({"name": job.handler.name}, ctx)
        raise JobFailed(f"job type {job.kind} is not supported by this sundial version")

    def _maybe_retry(self, tracked: Tracked, slot: datetime, attempt: int) -> None:
        spec = tracked.spec
        if spec is None or attempt > spec.retry.limit:
            return
        due = utcnow() + timedelta(seconds=spec.retry.delay(attempt))
        self._spawn(self._claim_retry(tracked, slot, attempt + 1, due), name=f"sundial-retry-{tracked.key}")

    async def _claim_retry(self, tracked: Tracked, slot: datetime, attempt: int, due: datetime) -> None:
        """A retry is recorded (Pending) when it is decided, not when its backoff ends.

        So it survives this replica: after a crash another replica adopts the row and runs it at
        ``due`` (kept in Redis next to the row), and a restart of this replica finds it again.
        """
        w = SlotWork(tracked, slot, attempt, Trigger.RETRY)
        run = self._new_run(tracked, slot, attempt, Trigger.RETRY, RunStatus.PENDING)
        self._retries[run.id] = (w, run, None)
        try:
            inserted = await self.history.claim([run])
        except Exception:
            log.exception("[%s] recording retry attempt %d failed; it is lost", tracked.key, attempt)
            inserted = set()
        if run.id not in inserted:
            self._retries.pop(run.id, None)
            return
        ttl = self.settings.lease_ttl_seconds
        delay = max(0.0, (due - utcnow()).total_seconds())
        with contextlib.suppress(Exception):
            await self.leases.put(keys.retry_due(str(run.id)), due.isoformat(), delay + ttl * 10)
        self._schedule_retry(w, run, due)

    def _schedule_retry(self, w: SlotWork, run: NewRun, due: datetime) -> None:
        if self._stopping:  # the row stays Pending: the next replica (or incarnation) runs it
            self._retries.pop(run.id, None)
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, (due - utcnow()).total_seconds())
        handle = loop.call_at(loop.time() + delay, self._fire_retry, run.id)
        self._retries[run.id] = (w, run, handle)

    def _fire_retry(self, run_id: uuid.UUID) -> None:
        entry = self._retries.pop(run_id, None)
        if entry is not None:
            self._recent_retries[run_id] = time.monotonic()
            self._spawn(self._fire([(entry[0], entry[1])]), name="sundial-retry")

    # ------------------------------------------------------------------ leases
    def _release_soon(self, item: tuple[str, str]) -> None:
        self._releases.append(item)
        if len(self._releases) >= 256:
            self._lease_wakeup.set()

    async def _lease_loop(self) -> None:
        """One loop for every lease this replica holds: heartbeat, batched releases, renewals of
        long attempts, cross-replica cancellation. A few round trips per tick, whatever the load."""
        ttl = self.settings.lease_ttl_seconds
        period = min(ttl / 3, 1.0)
        last_renew = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lease_wakeup.wait(), timeout=0.1)
            self._lease_wakeup.clear()
            try:
                releases, self._releases = self._releases, []
                await self.leases.release_many(releases)
                now = time.monotonic()
                if now - last_renew < period:
                    continue
                last_renew = now
                await self.leases.put(keys.replica(self.replica), self.token, ttl)
                if self.shards.update(await self.leases.members(keys.members(), self.replica, ttl)):
                    log.info("replicas sharing the slots: %s", ", ".join(self.shards.members))
                cutoff = utcnow() - timedelta(seconds=period)
                held = [
                    a
                    for t in self._with_active.values()
                    for a in t.active.values()
                    if a.running_lease is not None and a.started < cutoff
                ]
                if not held:
                    continue
                await self.leases.renew_many([a.running_lease for a in held if a.running_lease], ttl)
                markers = [a for a in held if a.cancel_marker]
                flags = await self.leases.holders([a.cancel_marker for a in markers if a.cancel_marker])
                for a, flag in zip(markers, flags, strict=True):
                    if flag and a.task is not None and not a.task.done():
                        a.cancel_reason = "Replaced"
                        a.task.cancel()
            except Exception:
                log.exception("lease maintenance failed; retrying")
                await asyncio.sleep(period)

    # ------------------------------------------------------------------ status & events
    def _conditions(self, tracked: Tracked) -> list[dict[str, Any]]:
        spec = tracked.spec
        if tracked.invalid is not None:
            return [
                {"type": "Ready", "status": "False", "reason": "Invalid", "message": tracked.invalid},
                {"type": "Invalid", "status": "True", "reason": "InvalidSpec", "message": tracked.invalid},
                {"type": "Suspended", "status": "False", "reason": "Invalid", "message": ""},
            ]
        suspended = bool(spec and spec.suspend)
        if suspended:
            ready = {
                "type": "Ready",
                "status": "False",
                "reason": "Suspended",
                "message": "spec.suspend is true",
            }
        elif tracked.completed:
            ready = {
                "type": "Ready",
                "status": "True",
                "reason": "Completed",
                "message": "the one-shot runAt has run",
            }
        else:
            ready = {
                "type": "Ready",
                "status": "True",
                "reason": "Scheduled",
                "message": f"next run at {rfc3339(tracked.next_slot)}" if tracked.next_slot else "scheduled",
            }
        return [
            ready,
            {
                "type": "Suspended",
                "status": "True" if suspended else "False",
                "reason": "Suspended" if suspended else "Active",
                "message": "",
            },
            {"type": "Invalid", "status": "False", "reason": "Valid", "message": ""},
        ]

    def _status_conditions(self, tracked: Tracked) -> None:
        self.status.update(
            tracked.uid,
            tracked.namespace,
            tracked.name,
            {
                "observedGeneration": tracked.generation,
                "conditions": self._conditions(tracked),
                "nextScheduleTime": rfc3339(tracked.next_slot),
            },
        )

    def _status_started(self, tracked: Tracked, attempt: Attempt) -> None:
        changes: dict[str, Any] = {
            "active": [
                {
                    "id": a.run_id,
                    "scheduledTime": rfc3339(a.slot),
                    "startTime": rfc3339(a.started),
                    "replica": self.replica,
                }
                for a in list(tracked.active.values())[-10:]
            ],
        }
        if attempt.trigger != Trigger.MANUAL:
            changes["lastScheduleTime"] = rfc3339(attempt.slot)
        self.status.update(tracked.uid, tracked.namespace, tracked.name, changes)

    def _status_finished(
        self,
        tracked: Tracked,
        run_id: uuid.UUID,
        slot: datetime,
        attempt: int,
        trigger: str,
        status: str,
        reason: str | None,
        *,
        started: datetime | None,
        finished: datetime | None,
        message: str | None = None,
    ) -> None:
        last_run = {
            "id": str(run_id),
            "scheduledTime": rfc3339(slot),
            "startTime": rfc3339(started),
            "completionTime": rfc3339(finished),
            "status": str(status),
            "attempt": attempt,
            "trigger": str(trigger),
            "message": (message or reason or "")[:1024],
        }
        changes: dict[str, Any] = {
            "lastRun": {k: v for k, v in last_run.items() if v is not None},
            "active": [
                {
                    "id": a.run_id,
                    "scheduledTime": rfc3339(a.slot),
                    "startTime": rfc3339(a.started),
                    "replica": self.replica,
                }
                for a in list(tracked.active.values())[-10:]
            ],
            "observedGeneration": tracked.generation,
            "conditions": self._conditions(tracked),
            "nextScheduleTime": rfc3339(tracked.next_slot),
        }
        if trigger != Trigger.MANUAL:
            changes["lastScheduleTime"] = rfc3339(slot)
        if status == RunStatus.SUCCEEDED:
            changes["lastSuccessfulTime"] = rfc3339(finished)
        elif status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
            changes["lastFailureTime"] = rfc3339(finished)
        self.status.update(tracked.uid, tracked.namespace, tracked.name, changes)

    async def _event(self, tracked: Tracked, reason: str, message: str, type_: str) -> None:
        body = {"metadata": {"name": tracked.name, "namespace": tracked.namespace, "uid": tracked.uid}}
        await self.kube.event(body, reason=reason, message=message, type_=type_)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def _log_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s crashed", task.get_name(), exc_info=task.exception())


def all_uids(runtime: Runtime) -> Iterable[str]:
    return list(runtime.tracked)
