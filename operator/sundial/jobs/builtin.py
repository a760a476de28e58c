"""Handlers that ship with sundial: always registered, used by the demo and the benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

from sundial.jobs.context import JobContext, JobFailed
from sundial.jobs.registry import job


@job("sundial.noop")
async def noop(ctx: JobContext) -> None:
    """Does nothing: measures the scheduler, not the job."""


@job("sundial.echo")
async def echo(ctx: JobContext) -> dict[str, Any]:
    """Returns the run's context; ``context.sleepSeconds`` and ``context.fail`` shape the attempt."""
    sleep = float(ctx.context.get("sleepSeconds", 0))
    ctx.capture.info("echo", slot=ctx.run.scheduled_for.isoformat(), attempt=ctx.run.attempt)
    if sleep > 0:
        await asyncio.sleep(sleep)
    fail_until = int(ctx.context.get("failAttempts", 0))
    if ctx.context.get("fail") or ctx.run.attempt <= fail_until:
        raise JobFailed(f"asked to fail (attempt {ctx.run.attempt})")
    return {"context": ctx.context, "attempt": ctx.run.attempt}
