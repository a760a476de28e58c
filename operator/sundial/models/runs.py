"""The vocabulary of a run: its status and what triggered it (the contract's exact spellings)."""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    """The status of one run, spelled the same in status, events and the run history."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


class Trigger(enum.StrEnum):
    """What started a run."""

    SCHEDULE = "Schedule"
    MANUAL = "Manual"
    RETRY = "Retry"
    CATCH_UP = "CatchUp"


TERMINAL: frozenset[RunStatus] = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.SKIPPED,
        RunStatus.TIMED_OUT,
        RunStatus.CANCELLED,
    }
)
"""Statuses a run never leaves."""
