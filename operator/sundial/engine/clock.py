"""The engine's only source of time: asked for the time, slept through, and set to ring.

Every wait in the engine goes through a :class:`Clock`, so a test can hand it a manual clock and
run "an hour later" in milliseconds; production uses :class:`SystemClock`. Wall-clock instants
(``now``) decide slots and records; ``monotonic`` measures intervals and never jumps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from sundial.models.base import parse_timestamp

__all__ = ["Clock", "SystemClock", "Timer", "parse_time"]

parse_time = parse_timestamp


class Timer(Protocol):
    """A callback set to run later; cancelling it before then means it never runs."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards, for intervals and rate limits."""

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """Wait until ``event`` is set or ``seconds`` passed; True if it was set."""

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` on the event loop after ``delay`` seconds."""


class SystemClock:
    """The real time of the machine, and the event loop's timers."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(seconds, 0.0))
            return True
        return False

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return asyncio.get_running_loop().call_later(max(delay, 0.0), callback, *args)
