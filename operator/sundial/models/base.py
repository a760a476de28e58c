"""The shared base of the CronConfig models and the RFC 3339 timestamp type."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import pydantic
from pydantic import alias_generators


class CamelModel(pydantic.BaseModel):
    """A model read from and written to Kubernetes: camelCase keys, unknown keys are errors.

    Objects normally pass the CRD schema first, so an unknown key means the object bypassed it
    (an old CRD, ``sundial validate`` on a local file): it is reported, never silently dropped.
    Python code may use either the snake_case names or the camelCase aliases.
    """

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="forbid",
    )


def format_timestamp(value: datetime.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as Kubernetes writes it; fractional seconds only if present."""
    # isoformat is C code and prints microseconds only when there are some: on the hot path of
    # every status update, it is several times faster than strftime
    if value.tzinfo is not datetime.UTC:
        value = value.astimezone(datetime.UTC)
    return value.isoformat()[:-6] + "Z"  # "+00:00" -> "Z"


def parse_timestamp(value: Any) -> datetime.datetime | None:
    """An RFC 3339 string (``Z`` or offset) or a datetime, as aware UTC; ``None`` for empty."""
    if not value:
        return None
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC)
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(datetime.UTC)


Timestamp = Annotated[
    pydantic.AwareDatetime,
    pydantic.PlainSerializer(format_timestamp, return_type=str),
]
"""An instant with a time zone; always serialized as RFC 3339 UTC (``2024-05-01T02:00:00Z``)."""
