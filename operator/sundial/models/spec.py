"""The CronConfig spec as pydantic models: the same fields, defaults and limits as the CRD.

The CRD (``crds/cronconfigs.sundial.io.yaml``) is what the API server enforces; these models are what
the operator and ``sundial validate`` read. ``tests/unit/test_crd.py`` pins the two together: change
both at once. Every rule the CRD states in CEL is a model validator here with the same message.
"""

from __future__ import annotations

import datetime
import enum
import zoneinfo
from typing import Annotated, Any

import pydantic
import pydantic_core
from pydantic import Field, StrictBool, StrictInt

from sundial.models import base

DEFAULT_SUCCESS_STATUS_CODES = (200, 201, 202, 204)


class SpecModel(base.CamelModel):
    """A part of a spec: read-only once parsed."""

    model_config = pydantic.ConfigDict(frozen=True)


def _exactly_one(model: pydantic.BaseModel, fields: tuple[str, ...], message: str) -> None:
    if sum(getattr(model, name) is not None for name in fields) != 1:
        raise pydantic_core.PydanticCustomError("exactly_one", message)


class ConcurrencyPolicy(enum.StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class MissedRunPolicy(enum.StrEnum):
    SKIP = "Skip"
    RUN_ONCE = "RunOnce"
    RUN_ALL = "RunAll"


class HttpMethod(enum.StrEnum):
    GET = "GET"
    HEAD = "HEAD"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"
    OPTIONS = "OPTIONS"


class JobKind(enum.StrEnum):
    """Which of the job types a :class:`JobSpec` holds (the field's name)."""

    HTTP = "http"
    SQL = "sql"
    TEMPLATE = "template"
    HANDLER = "handler"
    FANOUT = "fanout"


class SecretKeyRef(SpecModel):
    """A key of a Secret in the CronConfig's own namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    key: Annotated[str, Field(min_length=1, max_length=253)]


class HeaderFrom(SpecModel):
    """A request header whose value is read from a Secret at run time."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    secret_key_ref: SecretKeyRef


class RetryPolicy(SpecModel):
    """Retries with exponential backoff: ``backoffSeconds`` doubled per retry, capped."""

    limit: Annotated[StrictInt, Field(ge=0, le=100)] = 0
    backoff_seconds: Annotated[StrictInt, Field(ge=1, le=86400)] = 10
    max_backoff_seconds: Annotated[StrictInt, Field(ge=1, le=86400)] = 600

    @pydantic.model_validator(mode="after")
    def _check_backoff(self) -> RetryPolicy:
        if self.backoff_seconds > self.max_backoff_seconds:
            raise pydantic_core.PydanticCustomError(
                "backoff", "backoffSeconds must not exceed maxBackoffSeconds"
            )
        return self

    def delay(self, retry: int) -> int:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        # Cap the exponent: 2**17 * 1 s already exceeds the largest allowed maxBackoffSeconds.
        return min(self.backoff_seconds << min(retry - 1, 17), self.max_backoff_seconds)


class ItemRetryPolicy(RetryPolicy):
    """Retries of one fan-out item: like :class:`RetryPolicy`, but three retries by default."""

    limit: Annotated[StrictInt, Field(ge=0, le=100)] = 3


class HttpJob(SpecModel):
    """An HTTP request; the run succeeds if the response status is in ``successStatusCodes``."""

    url: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://")]
    method: HttpMethod = HttpMethod.POST
    headers: Annotated[dict[str, Annotated[str, Field(max_length=8192)]], Field(max_length=64)] | None = None
    """Literal headers; secret values belong in ``headersFrom``."""
    headers_from: Annotated[list[HeaderFrom], Field(max_length=32)] | None = None
    body: dict[str, Any] | str | None = None
    """A JSON object (sent as ``application/json``) or a string (sent as is)."""
    success_status_codes: Annotated[
        list[Annotated[StrictInt, Field(ge=100, le=599)]], Field(min_length=1, max_length=64)
    ] = Field(default_factory=lambda: list(DEFAULT_SUCCESS_STATUS_CODES))

    @pydantic.field_validator("body", mode="before")
    @classmethod
    def _check_body(cls, value: object) -> object:
        # One clear message instead of one per member of the union.
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, dict) and all(isinstance(key, str) for key in value):
            return value
        raise pydantic_core.PydanticCustomError("body", "body must be a JSON object or a string")

    @pydantic.field_validator("headers_from")
    @classmethod
    def _check_unique_headers(cls, value: list[HeaderFrom] | None) -> list[HeaderFrom] | None:
        names = [header.name for header in value or ()]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise pydantic_core.PydanticCustomError(
                "duplicate", "duplicate header name(s): {names}", {"names": ", ".join(duplicates)}
            )
        return value

    @pydantic.field_validator("success_status_codes")
    @classmethod
    def _check_unique_codes(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise pydantic_core.PydanticCustomError("duplicate", "status codes must be unique")
        return value


class HttpSource(HttpJob):
    """An HTTP request whose JSON response holds the fan-out items."""

    items_path: Annotated[str, Field(min_length=1, max_length=256)] = "$"
    """JSONPath into the response body selecting the list of items; ``$`` is the body itself."""


class QueryFrom(SpecModel):
    """Where to read the SQL text from instead of ``query``."""

    secret_key_ref: SecretKeyRef


class SqlJob(SpecModel):
    """An SQL statement against the database whose SQLAlchemy URL is in a Secret."""

    connection_secret_ref: SecretKeyRef
    query: Annotated[str, Field(min_length=1, max_length=65536)] | None = None
    query_from: QueryFrom | None = None
    read_only: StrictBool = False

    @pydantic.model_validator(mode="after")
    def _check_query(self) -> SqlJob:
        _exactly_one(self, ("query", "query_from"), "exactly one of query or queryFrom must be set")
        return self


class TemplateJob(SpecModel):
    """A batch/v1 JobTemplateSpec: one Kubernetes Job per run. Its contents are Kubernetes' to check."""

    metadata: dict[str, Any] | None = None
    spec: dict[str, Any]


class HandlerJob(SpecModel):
    """A Python callable registered with ``@sundial.job(name)``."""

    name: Annotated[str, Field(min_length=1, max_length=253)]


class FanoutSource(SpecModel):
    """Where the fan-out items come from: exactly one of sql, http or handler."""

    sql: SqlJob | None = None
    http: HttpSource | None = None
    handler: HandlerJob | None = None

    @pydantic.model_validator(mode="after")
    def _check_one(self) -> FanoutSource:
        _exactly_one(self, ("sql", "http", "handler"), "exactly one of sql, http or handler must be set")
        return self


class FanoutEach(SpecModel):
    """What runs for each item: exactly one of handler or http."""

    handler: HandlerJob | None = None
    http: HttpJob | None = None

    @pydantic.model_validator(mode="after")
    def _check_one(self) -> FanoutEach:
        _exactly_one(self, ("handler", "http"), "exactly one of handler or http must be set")
        return self


class FanoutJob(SpecModel):
    """A source yields items; each item is processed on its own, with its own retries."""

    source: FanoutSource
    each: FanoutEach
    item_key: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """The item field that identifies an item; unset: ``id`` if an item has it, else a hash of the item."""
    parallelism: Annotated[StrictInt, Field(ge=1, le=1000)] = 10
    """Items in flight at once across all replicas."""
    item_retry: ItemRetryPolicy = Field(default_factory=ItemRetryPolicy)


class JobSpec(SpecModel):
    """The work done at each slot: exactly one of http, sql, template, handler or fanout."""

    http: HttpJob | None = None
    sql: SqlJob | None = None
    template: TemplateJob | None = None
    handler: HandlerJob | None = None
    fanout: FanoutJob | None = None

    @pydantic.model_validator(mode="after")
    def _check_one(self) -> JobSpec:
        _exactly_one(
            self,
            tuple(JobKind),
            "exactly one of http, sql, template, handler or fanout must be set",
        )
        return self

    @property
    def kind(self) -> JobKind:
        """The job type that is set."""
        return next(kind for kind in JobKind if getattr(self, kind) is not None)

    @property
    def selected(self) -> HttpJob | SqlJob | TemplateJob | HandlerJob | FanoutJob:
        """The one job definition that is set."""
        job: HttpJob | SqlJob | TemplateJob | HandlerJob | FanoutJob = getattr(self, self.kind)
        return job


class CronConfigSpec(SpecModel):
    """What to run and when: ``spec`` of a CronConfig."""

    schedule: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """A cron expression or macro; parsed by ``sundial.scheduling``, not here."""
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    run_at: base.Timestamp | None = None
    suspend: StrictBool = False
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    starting_deadline_seconds: Annotated[StrictInt, Field(ge=1, le=31536000)] | None = None
    missed_run_policy: MissedRunPolicy = MissedRunPolicy.RUN_ONCE
    jitter_seconds: Annotated[StrictInt, Field(ge=0, le=86400)] = 0
    timeout_seconds: Annotated[StrictInt, Field(ge=1, le=604800)] = 3600
    successful_jobs_history_limit: Annotated[StrictInt, Field(ge=0, le=1000)] = 3
    """``template`` only: finished Jobs that succeeded kept in the cluster per CronConfig."""
    failed_jobs_history_limit: Annotated[StrictInt, Field(ge=0, le=1000)] = 1
    """``template`` only: finished Jobs that failed kept in the cluster per CronConfig."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    dry_run: StrictBool = False
    context: dict[str, Any] = Field(default_factory=dict)
    job: JobSpec

    @pydantic.field_validator("time_zone")
    @classmethod
    def _check_time_zone(cls, value: str) -> str:
        if value == "UTC":  # needs no time zone database
            return value
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise pydantic_core.PydanticCustomError(
                "time_zone", "unknown time zone '{name}'", {"name": value}
            ) from None
        return value

    @pydantic.model_validator(mode="after")
    def _check_when(self) -> CronConfigSpec:
        _exactly_one(self, ("schedule", "run_at"), "exactly one of schedule or runAt must be set")
        return self

    @property
    def zone(self) -> datetime.tzinfo:
        """``timeZone`` as a tzinfo."""
        return datetime.UTC if self.time_zone == "UTC" else zoneinfo.ZoneInfo(self.time_zone)
