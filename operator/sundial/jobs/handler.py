"""``handler`` jobs: a registered Python callable; its return value is the run's result."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from sundial.jobs import registry
from sundial.jobs.context import JobContext, JobFailed


async def run(spec: dict[str, Any], ctx: JobContext) -> Any:
    name = spec["name"]
    fn = registry.lookup(name)
    if fn is None:
        raise JobFailed(f"no handler registered as {name!r} (known: {', '.join(registry.names()) or 'none'})")
    if inspect.iscoroutinefunction(fn):
        return await fn(ctx)
    # Sync handlers run in a thread so they never block the scheduler loop; a timed-out one is
    # abandoned (threads cannot be killed) and its result discarded.
    return await asyncio.to_thread(fn, ctx)
