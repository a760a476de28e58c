"""robfig/cron v3 as a reference: its answers, and the documented DST rule computed from its fields.

``robfig-next`` (hack/robfig, built by ``hack/build-robfig.sh``) prints what robfig parses an
expression into and the fire times its ``Next`` gives. Where sundial's DST rule applies (a matching
wall time that a transition skips or repeats), robfig's times are not the reference: robfig skips
such a time or fires it twice. There :func:`rule_slots` is: the rule from sundial's README applied to
robfig's own parsed fields, written here independently of sundial's scheduling code.
"""

from __future__ import annotations

import calendar
import json
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["Answer", "Bits", "RuleSlots", "ask", "build", "rule_slots", "transitions"]

HACK = Path(__file__).resolve().parents[2] / "hack"
STAR = 1 << 63
_LOOK_BACK = 3 * 3600  # more than any zone's DST shift
_HORIZON = timedelta(days=9 * 365)


def build() -> Path:
    """The cached robfig-next binary, built from the Go module proxy on first use."""
    done = subprocess.run(
        [str(HACK / "build-robfig.sh")], capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"hack/build-robfig.sh failed ({done.returncode}): {done.stderr.strip()}")
    return Path(done.stdout.strip())


@dataclass(frozen=True, slots=True)
class Bits:
    """robfig's parsed fields: one bit per allowed value, bit 63 for a ``*``/``?`` (the star bit)."""

    second: int
    minute: int
    hour: int
    dom: int
    month: int
    dow: int

    def day_matches(self, day: date) -> bool:
        """robfig's dayMatches: AND when either day field has the star bit, else OR."""
        if not self.month >> day.month & 1:
            return False
        in_dom = bool(self.dom >> day.day & 1)
        in_dow = bool(self.dow >> ((day.weekday() + 1) % 7) & 1)
        if (self.dom | self.dow) & STAR:
            return in_dom and in_dow
        return in_dom or in_dow


@dataclass(frozen=True, slots=True)
class Answer:
    error: str | None
    bits: Bits | None
    every: int | None  # seconds, for @every
    next: list[int]  # Unix seconds; a trailing 0 means robfig found none within its 5 years


def ask(binary: Path, cases: Sequence[tuple[str, str, int, int]]) -> list[Answer]:
    """robfig's answer for each ``(expr, tz, start, n)``, in one process for all of them."""
    lines = "".join(json.dumps({"expr": e, "tz": z, "start": s, "n": n}) + "\n" for e, z, s, n in cases)
    done = subprocess.run([str(binary)], input=lines, capture_output=True, text=True, check=True, timeout=300)
    answers: list[Answer] = []
    for line in done.stdout.splitlines():
        raw = json.loads(line)
        fields = raw.get("fields")
        bits = (
            None
            if fields is None
            else Bits(*(int(fields[k]) for k in ("second", "minute", "hour", "dom", "month", "dow")))
        )
        answers.append(Answer(raw.get("error"), bits, raw.get("every"), raw.get("next") or []))
    assert len(answers) == len(cases), (len(answers), len(cases))
    return answers


# -- the DST rule, from robfig's fields --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleSlots:
    slots: list[int]  # Unix seconds
    rule_applied: bool  # a skipped or repeated wall time was among the ones that made these slots


def _values(bits: int, low: int, high: int) -> list[int]:
    return [v for v in range(low, high + 1) if bits >> v & 1]


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _wall_to_instant(wall: datetime, zone: ZoneInfo) -> tuple[int, str | None, int]:
    """(slot, how, last occurrence): the rule's instant for a wall time and whether it applied.

    A wall time that occurs once is that instant; one that occurs twice is its first occurrence;
    one that does not occur is the transition that skipped it.
    """
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert first is not None and second is not None
    naive = int(calendar.timegm(wall.timetuple()))
    if first == second:
        return naive - int(first.total_seconds()), None, naive - int(first.total_seconds())
    if first > second:  # repeated: fold=0 is the earlier occurrence
        return naive - int(first.total_seconds()), "repeated", naive - int(second.total_seconds())
    # skipped: the transition t has naive - second < t <= naive - first; find it to the second
    lo, hi = naive - int(second.total_seconds()), naive - int(first.total_seconds())
    target = second
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return hi, "skipped", hi


def _walls(bits: Bits, start: datetime) -> Iterator[datetime]:
    """Matching wall times from ``start`` (naive, whole seconds) on, in order, without end."""
    hours, minutes, seconds = (
        _values(bits.hour, 0, 23),
        _values(bits.minute, 0, 59),
        _values(bits.second, 0, 59),
    )
    day = start.date()
    h0, m0, s0 = start.hour, start.minute, start.second
    while True:
        if bits.day_matches(day):
            for h in hours:
                if h < h0:
                    continue
                for m in minutes:
                    if h == h0 and m < m0:
                        continue
                    for s in seconds:
                        if h == h0 and m == m0 and s < s0:
                            continue
                        yield datetime(day.year, day.month, day.day, h, m, s)
                h0 = -1  # later hours start from :00:00
        day += timedelta(days=1)
        h0, m0, s0 = 0, 0, 0


def rule_slots(bits: Bits, tz: str, start: int, n: int) -> RuleSlots:
    """The first ``n`` slots after ``start`` by sundial's documented DST rule, from robfig's fields.

    Like sundial, it gives up 9 years after the last slot found (or the start).
    """
    zone = _zone(tz)
    wall_start = datetime.fromtimestamp(start, zone).replace(tzinfo=None)
    if any(abs(t - start) <= _LOOK_BACK for t in transitions(tz)):
        # Near a fall-back, wall times before the start's own reading may occur again after it:
        # the rule applies to them (robfig fires their second occurrence).
        wall_start -= timedelta(seconds=_LOOK_BACK)
    slots: list[int] = []
    applied = False
    give_up = wall_start + _HORIZON
    for wall in _walls(bits, wall_start):
        if wall > give_up:
            break
        slot, how, last = _wall_to_instant(wall, zone)
        if how is not None and last > start:
            applied = True  # robfig would skip it, or fire its second occurrence
        if slot <= start or (slots and slot == slots[-1]):
            continue
        slots.append(slot)
        give_up = wall + _HORIZON
        if len(slots) == n:
            break
    return RuleSlots(slots, applied)


@lru_cache(maxsize=64)
def transitions(tz: str, first_year: int = 2015, last_year: int = 2045) -> tuple[int, ...]:
    """Every instant the zone's UTC offset changes in those years (Unix seconds)."""
    zone = _zone(tz)
    moment = int(datetime(first_year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(last_year + 1, 1, 1, tzinfo=UTC).timestamp())
    step = 6 * 3600
    found: list[int] = []
    offset = datetime.fromtimestamp(moment, zone).utcoffset()
    while moment < end:
        later = moment + step
        later_offset = datetime.fromtimestamp(later, zone).utcoffset()
        if later_offset != offset:
            lo, hi = moment, later
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, zone).utcoffset() == later_offset:
                    hi = mid
                else:
                    lo = mid
            found.append(hi)
        moment, offset = later, later_offset
    return tuple(found)
