"""The contract every schedule kind honours, and the one error type parsing may raise."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import UTC, datetime

__all__ = ["Schedule", "ScheduleError", "to_utc"]


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used.

    The message names the problem but not the field path (``spec.schedule``): the caller knows
    where the string came from and prefixes it, so the same message serves the CLI, the admission
    check and the ``Invalid`` condition.
    """


def to_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; naive datetimes are refused because their instant is a guess."""
    tzinfo = moment.tzinfo
    if tzinfo is UTC:
        return moment
    if tzinfo is None or tzinfo.utcoffset(moment) is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


class Schedule(ABC):
    """A deterministic set of instants ("slots"), so every replica computes the same ones.

    All arguments and results are timezone-aware; results are always in UTC. Search is bounded:
    ``None`` means "no slot within the search horizon", which for a schedule that parsed
    successfully only happens near the end of the representable calendar (year 9999).
    """

    __slots__ = ()

    expression: str
    """The schedule as written by the user."""
    tz: str
    """The IANA zone the schedule is read in (metadata only for ``@every``)."""

    @abstractmethod
    def next_after(self, after: datetime) -> datetime | None:
        """The first slot strictly after ``after``."""

    @abstractmethod
    def prev_before(self, before: datetime) -> datetime | None:
        """The last slot strictly before ``before``."""

    @abstractmethod
    def count_between(self, start: datetime, end: datetime) -> int:
        """How many slots lie in ``(start, end]``, without enumerating them.

        This is the companion of :meth:`slots_between`: a caller that got ``limit`` slots back can
        tell how many more there were.
        """

    def slots_between(self, start: datetime, end: datetime, *, limit: int) -> list[datetime]:
        """The first ``limit`` slots in ``(start, end]``, oldest first.

        The earliest ones are returned (not the latest) because callers walk forward from a known
        point; use :meth:`count_between` to learn whether the list was cut short, and
        :meth:`prev_before` to walk backwards from the newest end instead.
        """
        end = to_utc(end)
        slots: list[datetime] = []
        cursor = to_utc(start)
        while len(slots) < limit:
            slot = self.next_after(cursor)
            if slot is None or slot > end:
                break
            slots.append(slot)
            cursor = slot
        return slots

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expression!r}, tz={self.tz!r})"
