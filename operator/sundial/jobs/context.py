"""What a job sees of its run: the run's identity, the user's context, a capture log, secrets."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sundial.models.spec import CronConfigSpec

MAX_ENTRIES = 200
MAX_MESSAGE = 2000


class JobFailed(Exception):
    """The job ran and reported failure; ``result`` is still recorded.

    ``reason`` is the run's recorded reason (default ``JobFailed``): a job type that knows why
    (a Kubernetes Job's ``BackoffLimitExceeded``) says so.
    """

    def __init__(self, message: str, *, result: Any = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.reason = reason


class JobTimedOut(JobFailed):
    """The work exceeded its deadline outside the engine's own timer (a Job's ``DeadlineExceeded``)."""


@dataclass(frozen=True)
class RunInfo:
    """Identity of the attempt being executed."""

    id: str
    uid: str
    namespace: str
    name: str
    generation: int
    scheduled_for: datetime
    attempt: int
    trigger: str


class Capture:
    """Bounded structured log of one attempt; entries land in ``cron_runs.logs``."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.dropped = 0
        self.secrets: set[str] = set()
        """The attempt's secret values: redacted before a message is cut, so no prefix survives."""

    def log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            self.dropped += 1
            return
        entry: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "level": level,
            "message": redact(str(message), self.secrets)[:MAX_MESSAGE],
        }
        if fields:
            entry["fields"] = {k: _jsonable(v) for k, v in fields.items()}
        self.entries.append(entry)

    def info(self, message: str, **fields: Any) -> None:
        self.log(message, level="info", **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.log(message, level="warning", **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log(message, level="error", **fields)

    def export(self) -> list[dict[str, Any]]:
        if self.dropped:
            return [*self.entries, {"level": "warning", "message": f"{self.dropped} more entries dropped"}]
        return list(self.entries)


SecretReader = Callable[[str, str], Awaitable[str]]
"""(secret name, key) -> value, bound to the CronConfig's own namespace."""


@dataclass
class JobContext:
    """Handed to every job; handlers receive it as their single argument."""

    run: RunInfo
    context: dict[str, Any]
    capture: Capture
    read_secret: SecretReader
    secrets_seen: set[str] = field(default_factory=set)
    """Secret values this attempt read: redacted from everything recorded."""
    config: CronConfigSpec | None = None
    """The whole spec the attempt runs under (``timeoutSeconds``, history limits)."""
    item: Any = None
    """A fan-out item (a JSON object) when the handler runs as ``each.handler``."""
    item_key: str | None = None
    """That item's key (``itemKey``): an idempotency key, since an item is delivered at least once."""
    report: Callable[[dict[str, Any]], None] = field(default=lambda progress: None)
    """Progress of a long attempt (a fan-out's item counts), shown in ``status.active``."""

    def __post_init__(self) -> None:
        self.capture.secrets = self.secrets_seen

    async def secret(self, name: str, key: str) -> str:
        value = await self.read_secret(name, key)
        if value:
            self.secrets_seen.add(value)
        return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)


def redact(value: Any, secrets: set[str]) -> Any:
    """Replace every secret value wherever it appears in a JSON-like value."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value
