"""Handlers of the fast engine tests: they wait on the engine's clock, so time is the test's."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sundial.jobs.context import JobContext, JobFailed
from sundial.jobs.registry import job

CALLS: list[dict[str, Any]] = []
"""Every call of ``test.work``: CronConfig name, slot, attempt, trigger, and the generation and
context it ran with (cleared by the ``cluster`` fixture)."""
CLOCK: Any = None
"""The ManualClock the handlers sleep on (set by the ``cluster`` fixture)."""


@job("test.work")
async def work(ctx: JobContext) -> dict[str, Any]:
    """Sleeps ``context.seconds`` of engine time; fails attempts up to ``context.failAttempts``."""
    CALLS.append(
        {
            "name": ctx.run.name,
            "slot": ctx.run.scheduled_for,
            "attempt": ctx.run.attempt,
            "trigger": str(ctx.run.trigger),
            "generation": ctx.run.generation,
            "context": dict(ctx.context),
        }
    )
    seconds = float(ctx.context.get("seconds", 0))
    if seconds and CLOCK is not None:
        await CLOCK.sleep(seconds)
    if ctx.run.attempt <= int(ctx.context.get("failAttempts", 0)):
        raise JobFailed(f"failing attempt {ctx.run.attempt}")
    return {"attempt": ctx.run.attempt}


def calls_per_attempt(name: str | None = None) -> Counter[tuple[str, datetime, int]]:
    """How often ``test.work`` ran each (CronConfig, slot, attempt): once is the engine's promise."""
    return Counter(
        (call["name"], call["slot"], call["attempt"])
        for call in CALLS
        if name is None or call["name"] == name
    )
