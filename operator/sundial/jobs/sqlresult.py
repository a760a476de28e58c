"""The pure parts of ``sql`` jobs: which parameters a statement gets, and how its result is recorded.

Run metadata and the CronConfig's context reach the statement as bound parameters only, never as
text spliced into it, so a hostile context value is data, not SQL. The recorded result is bounded
(the first rows, a size cap) because it lands in the run history and the CronConfig's status.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from sundial.jobs.context import RunInfo

MAX_ROWS = 20
MAX_BYTES = 64 * 1024
RUN_PARAMETERS = ("run_id", "scheduled_for", "attempt", "context")


def statement(sql: str) -> sa.TextClause:
    """``text()``: ``:name`` is a parameter, ``::`` a cast (``now()::date``), ``\\:`` a literal colon."""
    return sa.text(sql)


def parameter_names(clause: sa.TextClause) -> set[str]:
    return set(clause.compile().params)


def _bindable(value: Any) -> Any:
    return json.dumps(value, default=str) if isinstance(value, dict | list) else value


def available_parameters(run: RunInfo, context: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter a statement may name: the run's and each context key that is an identifier.

    The run's own names win over context keys of the same name.
    """
    params = {str(k): _bindable(v) for k, v in context.items() if str(k).isidentifier()}
    params.update(
        run_id=run.id,
        scheduled_for=run.scheduled_for,
        attempt=run.attempt,
        context=json.dumps(dict(context), default=str, sort_keys=True),
    )
    return params


def bind(names: Iterable[str], available: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The parameters a statement names, and the names nothing provides."""
    wanted = sorted(set(names))
    return {n: available[n] for n in wanted if n in available}, [n for n in wanted if n not in available]


def jsonable(value: Any) -> Any:
    """A database value as JSON: datetimes ISO 8601, decimals as strings, bytes as base64."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | dt.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def shape_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """``columns`` and the first rows (at most :data:`MAX_ROWS` and :data:`MAX_BYTES` of JSON).

    Reads one row past the limit to know whether there were more; ``truncated`` says so.
    """
    cols = [str(c) for c in columns]
    kept: list[list[Any]] = []
    budget = MAX_BYTES - _size(cols)
    truncated = False
    for row in rows:
        if len(kept) == MAX_ROWS:
            truncated = True
            break
        converted = [jsonable(v) for v in row]
        cost = _size(converted) + 1
        if cost > budget:
            truncated = True
            break
        budget -= cost
        kept.append(converted)
    out: dict[str, Any] = {"columns": cols, "rows": kept}
    if truncated:
        out["truncated"] = True
    return out
