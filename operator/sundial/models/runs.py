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


class RunReason(enum.StrEnum):
    """Why a run ended as it did (``cron_runs.reason``, ``status.lastRun.message`` when no error).

    A failed attempt whose job raised an unexpected exception records the exception's class name
    instead, so these are the reasons the engine decides, not every value the column can hold.
    """

    MISSED = "Missed"
    """Not started within ``startingDeadlineSeconds`` (or skipped by ``missedRunPolicy``)."""
    CONCURRENCY_FORBID = "ConcurrencyForbid"
    """Skipped: an attempt of the same CronConfig was still running (``concurrencyPolicy: Forbid``)."""
    SUSPENDED = "Suspended"
    DRY_RUN = "DryRun"
    DELETED = "Deleted"
    """The CronConfig was deleted or became invalid between claim and fire."""
    OPERATOR_SHUTDOWN = "OperatorShutdown"
    REPLACED = "Replaced"
    CANCELLED = "Cancelled"
    TIMEOUT = "Timeout"
    JOB_FAILED = "JobFailed"
    DETACHED = "Detached"
    """Never recorded: the operator stopped following an attempt whose work goes on (a Job)."""
    STORE_UNAVAILABLE = "StoreUnavailable"
    """Not run: neither the run history nor Redis could record it, and nothing runs unrecorded."""
    OWNER_LOST = "OwnerLost"
    """The replica running the attempt died; another replica recorded the outcome."""


class ItemStatus(enum.StrEnum):
    """The status of one fan-out item within its run (``cron_run_items.status``)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    """Its last attempt failed and a retry is due: not final."""
    DEAD_LETTERED = "DeadLettered"
    """Failed ``itemRetry.limit`` + 1 times: kept with its last error until requeued."""

    @property
    def is_final(self) -> bool:
        return self in (ItemStatus.SUCCEEDED, ItemStatus.DEAD_LETTERED)


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
