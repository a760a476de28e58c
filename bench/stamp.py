"""``bench.stamp``: a no-op handler that returns when it ran, the benchmarks' view of the real start.

A run's ``started_at`` is when the concurrency gate let its batch go; at 10,000 aligned slots the
last attempt's code runs later than that. The stamp in its result tells how much later.
"""

from __future__ import annotations

import time

from sundial.jobs.context import JobContext
from sundial.jobs.registry import job


@job("bench.stamp")
async def stamp(ctx: JobContext) -> dict[str, float]:
    return {"t": time.time()}
