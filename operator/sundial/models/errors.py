"""Validation errors as one line per problem, with the field paths users write (camelCase)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pydantic

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VALUE_ERROR_PREFIX = "Value error, "


def format_location(loc: Sequence[int | str], *, prefix: str = "spec") -> str:
    """``('job', 'http', 'headersFrom', 0, 'name')`` -> ``spec.job.http.headersFrom[0].name``.

    Map keys that are not identifiers are quoted: ``spec.job.http.headers["X-Team"]``.
    """
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += f'["{part}"]'
    return path


def format_validation_error(err: pydantic.ValidationError, prefix: str = "spec") -> list[str]:
    """One ``path: message`` line per error, e.g. ``spec.job.http.url: Field required``.

    The models use camelCase aliases, so the paths are the ones in the manifest. Errors of a whole
    object (the exactly-one rules) carry the object's path, e.g. ``spec: exactly one of schedule or
    runAt must be set``. Input values are never repeated: they might be secrets.
    """
    lines: list[str] = []
    for error in err.errors(include_url=False, include_input=False):
        message = error["msg"]
        if error["type"] == "value_error" and message.startswith(_VALUE_ERROR_PREFIX):
            message = message[len(_VALUE_ERROR_PREFIX) :]
        path = format_location(error["loc"], prefix=prefix)
        line = f"{path}: {message}" if path else message
        if line not in lines:
            lines.append(line)
    return lines
