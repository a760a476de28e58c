"""One validation for every entry point: the operator, the admission webhook, ``sundial validate``.

The same code that fires a schedule parses it here, so what passes validation can be scheduled.
Every problem is one line that names the field path and the problem, e.g.
``spec.schedule: minute field value 61 out of range 0-59``; input values that might be secrets are
never repeated. Problems reject the object; warnings (risky but workable specs) do not.

:func:`validate_object` never raises: it is fed whatever is in the cluster or in a file, and a
validator bug must become a message, not a crashed operator.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pydantic

from sundial import risks
from sundial.jobs import kinds
from sundial.models import spec as spec_models
from sundial.models.base import format_timestamp
from sundial.models.errors import format_location, format_validation_error
from sundial.scheduling import Schedule, ScheduleError, load_zone, parse_schedule
from sundial.scheduling.oneshot import OneShot

log = logging.getLogger("sundial.validation")

MAX_CONTEXT_BYTES = 64 * 1024
"""``spec.context`` as compact UTF-8 JSON may not be larger than this."""
MAX_DEPTH = 64
"""Nesting levels below ``spec``; deeper objects are refused before anything recurses into them."""
MAX_VALUES = 100_000
"""Values (objects, lists and scalars) in one spec; a spec is a few hundred, an attack is millions."""
SECRET_REF_FIELDS = frozenset({"secretKeyRef", "connectionSecretRef"})
# Cron fields in the order of a 6-field expression: name, lowest and highest value.
_CRON_FIELDS = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
_DURATION = re.compile(r"(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Valid:
    spec: spec_models.CronConfigSpec
    schedule: Schedule
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Invalid:
    problems: list[str]
    warnings: list[str] = field(default_factory=list)


class _Report:
    """Problems and warnings as ``path: message`` lines, each once, in the order found."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, path: str, message: str) -> None:
        line = f"{path}: {message}"
        if line not in self.problems:
            self.problems.append(line)

    def warning(self, path: str, message: str) -> None:
        line = f"{path}: {message}"
        if line not in self.warnings:
            self.warnings.append(line)

    def reported(self, path: str) -> bool:
        """Whether a problem about ``path`` is already listed."""
        return any(line.startswith(f"{path}: ") for line in self.problems)

    def invalid(self) -> Invalid:
        return Invalid(problems=list(self.problems), warnings=list(self.warnings))


def validate_object(
    obj: Mapping[str, Any], *, known_handlers: Collection[str] | None = None, now: datetime | None = None
) -> Valid | Invalid:
    """Validate a whole CronConfig object (as the API returns it or a manifest holds it); never raises.

    ``known_handlers``: the names registered with ``@sundial.job``; ``None`` (unknown, e.g. offline)
    skips that check. ``now`` decides what "in the past" means (default: the current time).
    """
    try:
        return _validate(obj, known_handlers=known_handlers, now=now or datetime.now(UTC))
    except Exception as err:  # a validator bug must not become an operator crash
        log.warning("validation failed unexpectedly", exc_info=True)
        return Invalid([f"spec: could not be validated ({type(err).__name__})"])


def _validate(
    obj: Mapping[str, Any], *, known_handlers: Collection[str] | None, now: datetime
) -> Valid | Invalid:
    report = _Report()
    if not isinstance(obj, Mapping):
        report.problem("object", f"must be an object, got {_kind(obj)}")
        return report.invalid()
    raw = obj.get("spec")
    if raw is None:
        report.problem("spec", "required object is missing")
        return report.invalid()
    if not isinstance(raw, Mapping):
        report.problem("spec", f"must be an object, got {_kind(raw)}")
        return report.invalid()

    # Size and depth first: everything after this recurses into the spec.
    if not _check_shape(raw, report):
        return report.invalid()
    _check_secret_refs(raw, report)
    _check_context(raw.get("context"), report)
    try:
        spec = spec_models.CronConfigSpec.model_validate(dict(raw))
    except pydantic.ValidationError as err:
        for line in format_validation_error(err, prefix="spec"):
            path = line.split(": ", 1)[0]
            if not report.reported(path):
                report.problems.append(line)
        # Check the schedule and handlers anyway, so one `kubectl apply` lists every problem at once.
        _parse_raw_schedule(raw, _creation(obj), report)
        _check_raw_handlers(raw, known_handlers, report)
        return report.invalid()

    schedule = _schedule_of(spec, _creation(obj), now, report)
    _check_job(spec, known_handlers, report)
    if report.problems or schedule is None:
        if not report.problems:
            report.problem("spec", "exactly one of schedule or runAt must be set")
        return report.invalid()
    for path, message in risks.warnings(spec, schedule, now):
        report.warning(path, message)
    return Valid(spec=spec, schedule=schedule, warnings=list(report.warnings))


# ------------------------------------------------------------------------------------- the raw shape
def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _check_shape(raw: Mapping[str, Any], report: _Report) -> bool:
    """Refuse specs too deep or too large to handle safely (cycles from YAML aliases count as deep)."""
    stack: list[tuple[object, tuple[str | int, ...]]] = [(raw, ())]
    seen = 0
    while stack:
        value, loc = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            report.problem("spec", f"too large: more than {MAX_VALUES} values")
            return False
        if len(loc) > MAX_DEPTH:
            field_loc = loc[:3] if loc[0] == "job" else loc[:1]  # the field, not the deep path
            report.problem(format_location(field_loc), f"nested deeper than {MAX_DEPTH} levels")
            return False
        if isinstance(value, Mapping):
            stack.extend((child, (*loc, str(key))) for key, child in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((child, (*loc, index)) for index, child in enumerate(value))
    return True


def _secret_refs(value: object, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], object]]:
    """Every ``secretKeyRef``/``connectionSecretRef`` value below ``value`` with its location."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            if key in SECRET_REF_FIELDS:
                yield (*loc, key), child
            else:
                yield from _secret_refs(child, (*loc, str(key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _secret_refs(child, (*loc, index))


def _check_secret_refs(raw: Mapping[str, Any], report: _Report) -> None:
    job = raw.get("job")
    if not isinstance(job, Mapping):
        return
    # A template is a Kubernetes JobTemplateSpec: its secretKeyRefs are Kubernetes' to check.
    jobs = {key: value for key, value in job.items() if key != "template"}
    for loc, ref in _secret_refs(jobs, ("job",)):
        if isinstance(ref, Mapping) and "namespace" in ref:
            report.problem(
                format_location((*loc, "namespace")),
                "cross-namespace Secret references are not allowed: Secrets are read only from the "
                "CronConfig's own namespace (remove the namespace field)",
            )


def _check_context(context: object, report: _Report) -> None:
    if not isinstance(context, Mapping):
        return  # the model reports the type
    try:
        text = json.dumps(context, separators=(",", ":"), ensure_ascii=False, default=str)
    except (ValueError, TypeError):  # e.g. integers with more digits than Python converts
        report.problem("spec.context", "cannot be encoded as JSON")
        return
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_CONTEXT_BYTES:
        report.problem(
            "spec.context", f"{size} bytes as JSON, larger than the limit of {MAX_CONTEXT_BYTES // 1024} KiB"
        )


# ------------------------------------------------------------------------------------- when it fires
def _creation(obj: Mapping[str, Any]) -> datetime:
    """``metadata.creationTimestamp``, the anchor of ``@every``; now for manifests that have none."""
    meta = obj.get("metadata")
    raw = meta.get("creationTimestamp") if isinstance(meta, Mapping) else None
    if isinstance(raw, datetime):  # YAML reads unquoted timestamps as datetimes
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC).replace(microsecond=0)


def _sub_second(expression: str) -> str | None:
    """The interval of ``@every 500ms``-like expressions shorter than a second; ``None`` otherwise."""
    word, _, rest = expression.strip().partition(" ")
    text = rest.strip().lower()
    if word.lower() != "@every" or not _DURATION.fullmatch(text):
        return None
    total = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))
    return text if total < 1 else None


def _step_out_of_range(expression: str) -> str | None:
    """``*/61``: a step beyond the field's range matches only the first value, which is never meant."""
    fields = expression.split()
    if expression.strip().startswith("@") or len(fields) not in (5, 6):
        return None
    if len(fields) == 5:
        fields = ["0", *fields]
    for text, (name, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            step = item.partition("/")[2]
            if step.isascii() and step.isdigit() and int(step) > high:
                return f"{name} field value {step} out of range {low}-{high}"
    return None


def _parse(expression: str, zone: str, anchor: datetime, report: _Report) -> Schedule | None:
    """Parse ``spec.schedule`` with the scheduler's own parser; problems go to ``report``."""
    interval = _sub_second(expression)
    if interval is not None:
        report.problem("spec.schedule", f"@every interval must be at least 1s, got {interval}")
        return None
    try:
        schedule = parse_schedule(expression, tz=zone, anchor=anchor)
    except ScheduleError as err:
        report.problem("spec.schedule", str(err))
        return None
    step = _step_out_of_range(expression)
    if step is not None:
        report.problem("spec.schedule", step)
        return None
    return schedule


def _zone_or_utc(time_zone: object, report: _Report) -> str:
    """``spec.timeZone`` if it is a zone the scheduler can load; else UTC (and a problem)."""
    if time_zone is None:
        return "UTC"
    if not isinstance(time_zone, str):
        return "UTC"  # the model reports the type
    try:
        load_zone(time_zone)
    except ScheduleError:
        if not report.reported("spec.timeZone"):
            report.problem("spec.timeZone", f"unknown time zone {time_zone!r}")
        return "UTC"
    return time_zone


def _parse_raw_schedule(raw: Mapping[str, Any], anchor: datetime, report: _Report) -> None:
    expression = raw.get("schedule")
    zone = _zone_or_utc(raw.get("timeZone"), report)
    if isinstance(expression, str) and not report.reported("spec.schedule"):
        _parse(expression, zone, anchor, report)


def _schedule_of(
    spec: spec_models.CronConfigSpec, anchor: datetime, now: datetime, report: _Report
) -> Schedule | None:
    if spec.schedule is not None:
        schedule = _parse(spec.schedule, _zone_or_utc(spec.time_zone, report), anchor, report)
        if schedule is not None and schedule.next_after(now) is None:
            report.problem("spec.schedule", f"this schedule never fires after {format_timestamp(now)}")
            return None
        return schedule
    if spec.run_at is not None:
        if spec.run_at < now:
            report.warning(
                "spec.runAt",
                f"{format_timestamp(spec.run_at)} is in the past: a one-time run due before the CronConfig "
                "was created never fires",
            )
        return OneShot(spec.run_at)
    return None


# ------------------------------------------------------------------------------------- what it runs
def _handler_refs(job: spec_models.JobSpec) -> Iterator[tuple[str, str]]:
    """Handler names a job type of its own does not check yet (fan-out's) with their paths."""
    if job.fanout is not None:
        if job.fanout.source.handler is not None:
            yield "spec.job.fanout.source.handler.name", job.fanout.source.handler.name
        if job.fanout.each.handler is not None:
            yield "spec.job.fanout.each.handler.name", job.fanout.each.handler.name


_HANDLER_PATHS = (
    ("job", "handler"),
    ("job", "fanout", "source", "handler"),
    ("job", "fanout", "each", "handler"),
)


def _check_handler_name(path: str, name: str, known_handlers: Collection[str], report: _Report) -> None:
    if name not in known_handlers and not report.reported(path):
        known = ", ".join(sorted(known_handlers)) or "none registered"
        report.problem(path, f"no handler named {name!r} is registered (known: {known})")


def _check_raw_handlers(
    raw: Mapping[str, Any], known_handlers: Collection[str] | None, report: _Report
) -> None:
    """Handler names of a spec the model refused (for the other problems)."""
    if known_handlers is None:
        return
    for loc in _HANDLER_PATHS:
        node: object = raw
        for key in loc:
            node = node.get(key) if isinstance(node, Mapping) else None
        name = node.get("name") if isinstance(node, Mapping) else None
        if isinstance(name, str) and name:
            _check_handler_name(format_location((*loc, "name")), name, known_handlers, report)


def _check_job(
    spec: spec_models.CronConfigSpec, known_handlers: Collection[str] | None, report: _Report
) -> None:
    kind = spec.job.kind
    job_type = kinds.for_check(kind)
    if job_type is None:
        report.problem(
            f"spec.job.{kind}",
            f"job type '{kind}' is not supported by this sundial version yet "
            f"(supported: {', '.join(sorted(kinds.supported()))})",
        )
    else:
        for finding in job_type.check(spec.job.selected, known_handlers=known_handlers):
            (report.warning if finding.warning else report.problem)(finding.path, finding.message)
    if spec.job.fanout is not None and spec.retry.limit > 0:
        report.warning(
            "spec.retry.limit",
            "a retry of a fan-out run is a new run: its source is read again and every item runs again; "
            "spec.job.fanout.itemRetry retries the items that failed",
        )
    if known_handlers is not None:
        for path, name in _handler_refs(spec.job):
            _check_handler_name(path, name, known_handlers, report)
