"""What the fan-out job type needs of the run history: implemented by ``sundial.store.items.RunItems``.

A protocol, so job types stay independent of the store (the layers contract): the application
hands the implementation over in :class:`~sundial.jobs.base.JobEnvironment`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from sundial.models.items import BegunItem, ItemOutcome
from sundial.models.runs import ItemStatus


class ItemStore(Protocol):
    def add(self, run_id: uuid.UUID, items: Sequence[tuple[str, Any]], at: dt.datetime) -> list[str]: ...

    def begin(
        self, run_id: uuid.UUID, keys: Sequence[str], takeover: Sequence[str], at: dt.datetime
    ) -> list[BegunItem]: ...

    def end(self, run_id: uuid.UUID, outcomes: Sequence[ItemOutcome], at: dt.datetime) -> set[str]: ...

    def release(self, run_id: uuid.UUID, begun: Iterable[tuple[str, int]], at: dt.datetime) -> None: ...

    def counts(self, run_id: uuid.UUID) -> dict[ItemStatus, int]: ...

    def unfinished(
        self, run_id: uuid.UUID, *, after: str = "", limit: int = 500, running: bool = False
    ) -> list[str]: ...

    def progress(self, run_id: uuid.UUID) -> Any: ...

    def set_progress(self, run_id: uuid.UUID, result: Any) -> None: ...
