"""``handler`` jobs: a registered Python callable; its return value is the run's result."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Collection, Iterable
from typing import Any

from sundial.jobs import registry
from sundial.jobs.base import Finding, JobType
from sundial.jobs.context import JobContext, JobFailed
from sundial.models.spec import HandlerJob, JobKind


class HandlerJobType(JobType[HandlerJob]):
    kind = JobKind.HANDLER
    model = HandlerJob

    async def run(self, spec: HandlerJob, ctx: JobContext) -> Any:
        fn = registry.lookup(spec.name)
        if fn is None:
            known = ", ".join(registry.names()) or "none"
            raise JobFailed(f"no handler registered as {spec.name!r} (known: {known})")
        if inspect.iscoroutinefunction(fn):
            return await fn(ctx)
        # Sync handlers run in a thread so they never block the scheduler loop; a timed-out one is
        # abandoned (threads cannot be killed) and its result discarded.
        return await asyncio.to_thread(fn, ctx)

    def check(self, spec: HandlerJob, *, known_handlers: Collection[str] | None) -> Iterable[Finding]:
        if known_handlers is not None and spec.name not in known_handlers:
            known = ", ".join(sorted(known_handlers)) or "none registered"
            yield Finding(
                "spec.job.handler.name", f"no handler named {spec.name!r} is registered (known: {known})"
            )
