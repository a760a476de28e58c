"""The key of a fan-out item: what makes "each item succeeds at most once" mean something.

The ``itemKey`` field (default ``id``) when the item has it as a string or an integer, else the
SHA-256 of the item's canonical JSON, so the same item yields the same key on every replica and
every run of the source. Keys longer than the column are stored as their hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

MAX_KEY = 512


class BadItem(ValueError):
    """A source yielded something that is not a fan-out item."""


def _hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def canonical(item: Any) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def key_of(item: Any, field: str | None) -> str:
    """The item's key; ``field`` is ``spec.job.fanout.itemKey`` (``None``: ``id`` if present)."""
    if not isinstance(item, dict):
        raise BadItem(f"items must be JSON objects, the source yielded a {type(item).__name__}")
    name = field or "id"
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int):
        if field is not None:
            shown = "missing" if value is None else f"a {type(value).__name__}"
            raise BadItem(f"itemKey {field!r} must be a string or an integer in every item; it is {shown}")
        return _hash(canonical(item))
    key = str(value)
    if not key:
        raise BadItem(f"itemKey {name!r} is empty in an item")
    return key if len(key) <= MAX_KEY else _hash(key)
