"""Handlers that ship with sundial and are always registered."""

from __future__ import annotations

from sundial.jobs.context import JobContext
from sundial.jobs.registry import job


@job("sundial.noop")
async def noop(ctx: JobContext) -> None:
    """Does nothing: measures the scheduler, not the job (the benchmarks use it)."""
