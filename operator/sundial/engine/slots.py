"""When each CronConfig fires next: its next slot in the one scheduler heap, and the fire instant.

A slot's fire instant is the slot plus its stable jitter; the heap entry is set ``lookahead``
seconds earlier, so the slot is leased and recorded before it is due.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sundial import metrics
from sundial.engine.core import Core
from sundial.engine.projection import Projection
from sundial.engine.scheduler import Scheduler
from sundial.engine.tracked import SlotWork, Tracked
from sundial.models.runs import Trigger
from sundial.models.spec import ConcurrencyPolicy
from sundial.scheduling import jitter_offset


def fire_time(work: SlotWork) -> datetime:
    """The instant an attempt starts: the slot plus its jitter (retries start when their backoff ends)."""
    spec = work.tracked.spec
    if work.trigger == Trigger.RETRY or spec is None:
        return work.slot
    return work.slot + timedelta(seconds=jitter_offset(work.tracked.uid, work.slot, spec.jitter_seconds))


def superseded(work: SlotWork, now: datetime) -> bool:
    """An overdue scheduled slot of a Forbid/Replace CronConfig whose next slot is already due.

    Taken over late (its claimer died, a store was down), it is ``Missed``: run now, it would be
    skipped or cancel beside the newer one, reporting a concurrency it never met at its own
    instant (as ``RunOnce`` after downtime keeps only the newest slot). Catch-up slots are not:
    ``missedRunPolicy`` decided them.
    """
    spec, schedule = work.tracked.spec, work.tracked.schedule
    if spec is None or schedule is None or work.trigger != Trigger.SCHEDULE:
        return False
    if spec.concurrency_policy == ConcurrencyPolicy.ALLOW or fire_time(work) > now:
        return False
    newer = schedule.next_after(work.slot)
    return newer is not None and newer <= now


class Slots:
    def __init__(self, core: Core, scheduler: Scheduler, projection: Projection) -> None:
        self.core = core
        self.scheduler = scheduler
        self.projection = projection

    def reschedule(self, tracked: Tracked, *, after: datetime, publish: bool = True) -> None:
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
                self.scheduler.schedule(tracked.uid, fire.timestamp() - self.core.settings.lookahead_seconds)
            elif spec.run_at is not None:
                tracked.completed = True
        if publish:
            self.projection.scheduled(tracked)
        self.update_gauges()

    def stop(self, tracked: Tracked) -> None:
        self.scheduler.cancel(tracked.uid)
        tracked.next_slot = None

    def update_gauges(self, *, invalid: bool = False) -> None:
        metrics.SCHEDULED.set(len(self.scheduler))
        if invalid:  # O(n): only when validity may have changed, never per fire
            metrics.INVALID.set(sum(1 for t in self.core.tracked.values() if t.invalid))
