"""Example handlers for the demo, the examples in ``manifests/examples`` and the tests.

Not registered in a production operator: only when ``SUNDIAL_HANDLERS`` names ``sundial.examples``
(the demo, the chart's example values and the test suite do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
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


@job("sundial.digest_recipients")
def digest_recipients(ctx: JobContext) -> Iterator[list[dict[str, Any]]]:
    """A fan-out source: ``context.recipients`` (default 20) items ``{"id": "user-01", ...}``.

    A sync generator yielding lists of five items: each list is a batch, so a source never has to
    hold every item at once.
    """
    count = int(ctx.context.get("recipients", 20))
    for start in range(1, count + 1, 5):
        yield [
            {"id": f"user-{n:02d}", "email": f"user-{n:02d}@example.com", "n": n}
            for n in range(start, min(count, start + 4) + 1)
        ]


@job("sundial.digest_send")
async def digest_send(ctx: JobContext) -> dict[str, Any]:
    """A fan-out ``each`` handler: "sends" one digest; items listed in ``context.failItems`` always fail.

    ``context.sendSeconds`` (default 0.2) is how long one item takes, so the progress counts in
    ``status.active[].items`` can be watched.
    """
    item = ctx.item if isinstance(ctx.item, dict) else {}
    await asyncio.sleep(float(ctx.context.get("sendSeconds", 0.2)))
    if ctx.item_key in set(ctx.context.get("failItems") or ()):
        raise JobFailed(f"the mail server refused {item.get('email', ctx.item_key)} (failItems)")
    return {"sent": item.get("email"), "key": ctx.item_key}
