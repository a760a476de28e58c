"""One validation for every entry point: the operator, the admission webhook, ``sundial validate``.

The same code that fires a schedule parses it here, so what passes validation can be scheduled.
Messages name the field path and the problem: ``spec.schedule: minute field value 61 out of range 0-59``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pydantic

from sundial.models import spec as spec_models
from sundial.models.errors import format_validation_error
from sundial.scheduling import Schedule, ScheduleError, parse_schedule
from sundial.scheduling.oneshot import OneShot

SUPPORTED_JOBS = frozenset({"http", "handler"})
MAX_CONTEXT_BYTES = 64 * 1024


@dataclass(frozen=True)
class Valid:
    spec: spec_models.CronConfigSpec
    schedule: Schedule
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Invalid:
    problems: list[str]


def _creation(obj: dict[str, Any]) -> datetime:
    raw = (obj.get("metadata") or {}).get("creationTimestamp")
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            pass
    return datetime.now(UTC).replace(microsecond=0)


def validate_object(
    obj: dict[str, Any], *, known_handlers: Collection[str] | None = None, now: datetime | None = None
) -> Valid | Invalid:
    """Validate a whole CronConfig object (as the API returns it); never raises."""
    try:
        return _validate(obj, known_handlers=known_handlers, now=now or datetime.now(UTC))
    except Exception as err:  # a validator bug must not become an operator crash
        return Invalid([f"spec: could not be validated ({type(err).__name__}: {err})"])


def _validate(obj: dict[str, Any], *, known_handlers: Collection[str] | None, now: datetime) -> Valid | Invalid:
    raw = obj.get("spec")
    if not isinstance(raw, dict):
        return Invalid(["spec: required object is missing"])
    try:
        spec = spec_models.CronConfigSpec.model_validate(raw)
    except pydantic.ValidationError as err:
        return Invalid(format_validation_error(err, prefix="spec"))
    problems: list[str] = []
    warnings: list[str] = []
    schedule: Schedule | None = None
    if spec.schedule is not None:
        try:
            schedule = parse_schedule(spec.schedule, tz=spec.time_zone, anchor=_creation(obj))
        except ScheduleError as err:
            field_name = "spec.timeZone" if "time zone" in str(err) else "spec.schedule"
            problems.append(f"{field_name}: {err}")
    elif spec.run_at is not None:
        run_at = spec.run_at.astimezone(UTC)
        schedule = OneShot(run_at)
        if run_at < now:
            warnings.append(f"spec.runAt: {run_at.isoformat()} is in the past; it runs only per missedRunPolicy")
    kind = str(spec.job.kind)
    if kind not in SUPPORTED_JOBS:
        problems.append(f"spec.job.{kind}: job type '{kind}' is not supported by this sundial version yet "
                        f"(supported: {', '.join(sorted(SUPPORTED_JOBS))})")
    if spec.job.handler is not None and known_handlers is not None and spec.job.handler.name not in known_handlers:
        known = ", ".join(sorted(known_handlers)) or "none registered"
        problems.append(f"spec.job.handler.name: no handler named '{spec.job.handler.name}' (known: {known})")
    if len(pydantic.TypeAdapter(dict[str, Any]).dump_json(spec.context)) > MAX_CONTEXT_BYTES:
        problems.append(f"spec.context: larger than {MAX_CONTEXT_BYTES // 1024} KiB")
    if problems or schedule is None:
        return Invalid(problems or ["spec: exactly one of schedule or runAt must be set"])
    return Valid(spec=spec, schedule=schedule, warnings=warnings)
