"""The admission decision for one CronConfig request: allowed or not, why, and warnings.

``sundial.validation`` decides about the spec; this module adds what only admission knows about:
which operation it is, and the object's previous version.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sundial import validation
from sundial.jobs import registry

__all__ = ["MAX_PROBLEMS", "Verdict", "changes_spec", "registered_handlers", "review"]

MAX_PROBLEMS = 20
"""At most this many problems go into one rejection message; the rest are counted."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()


def registered_handlers() -> list[str]:
    """The ``@sundial.job`` names this process knows (the operator loads SUNDIAL_HANDLERS at start-up)."""
    return registry.names()


def changes_spec(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """A CREATE, or an UPDATE of the spec of an object not being deleted: worth validating."""
    meta = new.get("metadata")
    if isinstance(meta, Mapping) and meta.get("deletionTimestamp"):
        return False
    return old is None or old.get("spec") != new.get("spec")


def review(
    *,
    operation: str | None,
    new: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None = None,
    known_handlers: Collection[str] | None = None,
    now: datetime | None = None,
) -> Verdict:
    """Decide about a CREATE or UPDATE of a CronConfig; everything else is allowed.

    An UPDATE that leaves the spec as it was (labels, annotations such as ``sundial.io/run-now``,
    finalizers) is allowed even if the spec is invalid: an object that got in while the webhook was
    off must stay deletable and annotatable. Its problems are reported by its ``Invalid`` condition.
    """
    if operation not in ("CREATE", "UPDATE") or new is None:
        return Verdict(allowed=True)
    if operation == "UPDATE":
        meta = new.get("metadata")
        if isinstance(meta, Mapping) and meta.get("deletionTimestamp"):
            return Verdict(allowed=True)
        if old is not None and old.get("spec") == new.get("spec"):
            return Verdict(allowed=True)
    result = validation.validate_object(new, known_handlers=known_handlers, now=now)
    warnings = tuple(result.warnings)
    if isinstance(result, validation.Valid):
        return Verdict(allowed=True, warnings=warnings)
    problems = result.problems[:MAX_PROBLEMS]
    if len(result.problems) > MAX_PROBLEMS:
        problems.append(f"and {len(result.problems) - MAX_PROBLEMS} more problem(s)")
    return Verdict(allowed=False, message="; ".join(problems), warnings=warnings)
