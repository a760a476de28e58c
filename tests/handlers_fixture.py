"""Handlers the end-to-end tests load into the operator with ``SUNDIAL_HANDLERS=tests.handlers_fixture``.

The operator subprocess gets the repository root on ``PYTHONPATH``, so this module imports as
``tests.handlers_fixture``. Each handler reads the Secret named by its CronConfig's context
(``secretName``, ``secretKey``).

Only the operator imports this module: importing it in the test process would add these
handlers to that process's registry, which other tests read (the "known: ..." of messages).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import sundial
from tests.support.digest import fingerprint


@sundial.job("tests.leaky")
async def leaky(ctx: sundial.JobContext) -> dict[str, Any]:
    """Careless with its secret: logs it, returns it and fails with it in the message.

    The slot decides the outcome: second % 3 == 0 raises ``JobFailed`` (with the secret in the
    message and in the result), == 1 raises a plain ``RuntimeError``, == 2 succeeds.
    """
    value = await ctx.secret(ctx.context["secretName"], ctx.context["secretKey"])
    ctx.capture.info(f"using token {value}", token=value, nested={"list": [value, "fine"]})
    outcome = ctx.run.scheduled_for.second % 3
    if outcome == 0:
        raise sundial.JobFailed(f"the service rejected token {value}", result={"token": value})
    if outcome == 1:
        raise RuntimeError(f"crashed while holding {value}")
    return {
        "token": value,
        "header": f"Bearer {value}",
        "byToken": {value: "a secret as a key"},
        "fingerprint": fingerprint(value),
    }


@sundial.job("tests.async_secret")
async def async_secret(ctx: sundial.JobContext) -> dict[str, Any]:
    """An async handler: awaits ``ctx.secret`` on the operator's event loop."""
    value = await ctx.secret(ctx.context["secretName"], ctx.context["secretKey"])
    ctx.capture.info("async handler ran", attempt=ctx.run.attempt)
    return {
        "kind": "async",
        "fingerprint": fingerprint(value),
        "mainThread": threading.current_thread() is threading.main_thread(),
        "context": ctx.context,
    }


@sundial.job("tests.sync_secret")
def sync_secret(ctx: sundial.JobContext) -> dict[str, Any]:
    """A sync handler: runs in a worker thread, so it cannot ``await``; it drives ``ctx.secret``
    to completion with its own event loop (``asyncio.run``) instead."""
    value = asyncio.run(ctx.secret(ctx.context["secretName"], ctx.context["secretKey"]))
    ctx.capture.info("sync handler ran", attempt=ctx.run.attempt)
    return {
        "kind": "sync",
        "fingerprint": fingerprint(value),
        "mainThread": threading.current_thread() is threading.main_thread(),
        "context": ctx.context,
    }


@sundial.job("tests.fanout_items")
def fanout_items(ctx: sundial.JobContext) -> Any:
    """A fan-out source: ``context.count`` items ``{"id": "k<i>", "n": i}``, in lists of 250."""
    count = int(ctx.context["count"])
    for start in range(0, count, 250):
        yield [{"id": f"k{i}", "n": i} for i in range(start, min(count, start + 250))]
