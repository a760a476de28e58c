"""Example handlers for the demo, the examples in ``manifests/examples`` and the tests.

Not registered in a production operator: only when ``SUNDIAL_HANDLERS`` names ``sundial.examples``
(the demo, the chart's example values and the test suite do).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sundial.jobs.context import JobContext, JobFailed
from sundial.jobs.registry import job


@job("sundial.echo")
async def echo(ctx: JobContext) -> dict[str, Any]:
    """Returns the run's context; ``context.sleepSeconds``, ``fail`` and ``failAttempts`` shape it."""
    sleep = float(ctx.context.get("sleepSeconds", 0))
    ctx.capture.info("echo", slot=ctx.run.scheduled_for.isoformat(), attempt=ctx.run.attempt)
    if sleep > 0:
        await asyncio.sleep(sleep)
    fail_until = int(ctx.context.get("failAttempts", 0))
    if ctx.context.get("fail") or ctx.run.attempt <= fail_until:
        raise JobFailed(f"asked to fail (attempt {ctx.run.attempt})")
    return {"context": ctx.context, "attempt": ctx.run.attempt}
