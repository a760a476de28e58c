"""Fan-out items as the history records them: what a worker began, what it reports, a dead letter."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sundial.models.runs import ItemStatus


@dataclass(frozen=True)
class BegunItem:
    key: str
    attempts: int
    """This attempt's number: 1 for the first."""
    item: Any


@dataclass(frozen=True)
class ItemOutcome:
    key: str
    attempts: int
    status: ItemStatus
    error: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    run_id: uuid.UUID
    key: str
    attempts: int
    error: str | None
    item: Any
    updated_at: dt.datetime
