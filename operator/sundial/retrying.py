"""One retry policy for calls to PostgreSQL, Redis and the API server, and one way to log faults.

An outage of a dependency is expected: it is logged as one line naming what failed and why, and
retried with capped exponential backoff (tenacity). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import redis.exceptions
import sqlalchemy.exc
import tenacity
import urllib3.exceptions

log = logging.getLogger("sundial")
T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError, refused and reset sockets
    TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    aiohttp.ClientError,
    urllib3.exceptions.HTTPError,  # the kubernetes client's connection failures
)
"""Failures of a dependency (down, restarting, unreachable), not of sundial's own logic."""


def is_transient(err: BaseException) -> bool:
    """A dependency's outage; an error may also say so itself (an HTTP 503 from the API server)."""
    return isinstance(err, TRANSIENT) or getattr(err, "transient", False) is True


def log_fault(what: str, err: BaseException, *, level: int = logging.WARNING) -> None:
    """``what`` failed: one line for an outage, the traceback for anything that looks like a bug."""
    if is_transient(err):
        log.log(level, "%s failed: %s: %s", what, type(err).__name__, _first_line(err))
    else:
        log.error("%s failed", what, exc_info=err)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else ""


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int | None = None,
    first_delay: float = 0.5,
    max_delay: float = 5.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """``await fn()``, retried on transient failures; ``attempts=None`` retries until it works.

    The last failure is raised when the attempts run out; non-transient errors are raised at once.
    """
    stop = tenacity.stop_never if attempts is None else tenacity.stop_after_attempt(attempts)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        if err is not None:
            delay = state.next_action.sleep if state.next_action else 0.0
            log_fault(f"{what} (attempt {state.attempt_number}, retrying in {delay:.1f}s)", err)

    retrying = tenacity.AsyncRetrying(
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=first_delay, max=max_delay),
        retry=tenacity.retry_if_exception(is_transient),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await fn()
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
