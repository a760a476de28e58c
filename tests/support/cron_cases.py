"""Random cron expressions, zones and start instants for the robfig/cron differential test.

Mostly valid expressions in every syntax cron has (numbers, ranges, steps, lists, names in any
case, both day fields, ``?``, descriptors, ``@every``), with a share of the spellings the two
parsers treat differently, and start instants both anywhere and just before a DST transition.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tests.support.robfig import transitions

__all__ = ["ZONES", "Case", "generate"]

# UTC; whole-hour DST at night (Berlin, New York, London); at midnight (Santiago, Havana);
# a 30-minute DST shift (Lord Howe); odd offsets with DST (Chatham +12:45/+13:45); no DST at an
# odd offset (Kolkata); DST that goes backwards in Ramadan (Casablanca).
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Europe/London",
    "America/Santiago",
    "America/Havana",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "Africa/Casablanca",
)
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
EVERY = ("1s", "7s", "90s", "5m", "1h30m", "2h", "1m30s", "45m", "25h", "1h0m5s", "10m0s")
GO_ONLY_EVERY = ("1.5h", "500ms", "1500ms", "30s1m", "1s1s", "0s", "2h.5m", "90000ms", "+5m")
_START_LOW, _START_HIGH = 1_704_067_200, 1_956_528_000  # 2024-01-01 .. 2032-01-01 UTC


@dataclass(frozen=True, slots=True)
class Case:
    expr: str
    tz: str
    start: int
    n: int


@dataclass(frozen=True, slots=True)
class _Field:
    low: int
    high: int
    names: tuple[str, ...] = ()
    base: int = 0
    day: bool = False


_SECOND, _MINUTE, _HOUR = _Field(0, 59), _Field(0, 59), _Field(0, 23)
_DOM = _Field(1, 31, day=True)
_MONTH = _Field(1, 12, MONTHS, 1)
_DOW = _Field(0, 6, DAYS, 0, day=True)


def _name_case(rng: random.Random, name: str) -> str:
    return rng.choice((name, name.upper(), name.capitalize()))


def _value(rng: random.Random, f: _Field, *, low: int | None = None) -> str:
    number = rng.randint(f.low if low is None else low, f.high)
    if f.names and rng.random() < 0.4:
        return _name_case(rng, f.names[number - f.base])
    return f"0{number}" if rng.random() < 0.05 else str(number)


def _item(rng: random.Random, f: _Field, odd: float) -> str:
    roll = rng.random()
    if roll < odd:  # spellings the parsers may disagree on
        choices = [f"+{rng.randint(f.low, f.high)}", f"*-{rng.randint(f.low, f.high)}", str(f.high + 1)]
        if not f.day:
            choices.append("?")
        if f is _DOW:
            choices += ["7", f"{rng.randint(0, 6)}-7", "7/2", "sun-7"]
        return rng.choice(choices)
    if roll < 0.25:
        return "*"
    if roll < 0.32 and f.day:
        return "?"
    if roll < 0.55:
        return _value(rng, f)
    if roll < 0.72:
        first = rng.randint(f.low, f.high)
        last = rng.randint(first, f.high)
        return f"{_spell(rng, f, first)}-{_spell(rng, f, last)}"
    step = rng.choice((1, 1, 2, 2, 3, 5, 7, 10, 15, 30, f.high + 5))
    step_text = f"0{step}" if rng.random() < 0.1 else str(step)
    form = rng.random()
    if form < 0.4:
        return f"{rng.choice(('*', '?') if f.day else ('*',))}/{step_text}"
    first = rng.randint(f.low, f.high)
    if form < 0.7:
        return f"{_spell(rng, f, first)}/{step_text}"
    last = rng.randint(first, f.high)
    return f"{_spell(rng, f, first)}-{_spell(rng, f, last)}/{step_text}"


def _spell(rng: random.Random, f: _Field, number: int) -> str:
    if f.names and rng.random() < 0.4:
        return _name_case(rng, f.names[number - f.base])
    return str(number)


def _field(rng: random.Random, f: _Field, odd: float) -> str:
    count = rng.choice((1, 1, 1, 1, 2, 2, 3))
    items = [_item(rng, f, odd) for _ in range(count)]
    if rng.random() < odd / 2:
        items.insert(rng.randint(0, len(items)), "")  # an empty list item: "1,,2", ",5"
    return ",".join(items)


def _expression(rng: random.Random, odd: float) -> str:
    roll = rng.random()
    if roll < 0.05:
        word = rng.choice(DESCRIPTORS)
        return word if rng.random() > odd else _name_case(rng, word)
    if roll < 0.10:
        word = "@every" if rng.random() > odd else _name_case(rng, "@every")
        return f"{word} {rng.choice(GO_ONLY_EVERY if rng.random() < odd * 2 else EVERY)}"
    # Sparse fields keep most schedules firing a few times an hour to a few times a year; "*" in
    # the seconds of a 6-field expression would make every case a per-second one.
    second = _field(rng, _SECOND, odd) if rng.random() < 0.5 else str(rng.randint(0, 59))
    fields = [
        _field(rng, _MINUTE, odd) if rng.random() < 0.6 else str(rng.randint(0, 59)),
        _field(rng, _HOUR, odd),
        _field(rng, _DOM, odd) if rng.random() < 0.5 else "*",
        _field(rng, _MONTH, odd) if rng.random() < 0.3 else "*",
        _field(rng, _DOW, odd) if rng.random() < 0.5 else rng.choice(("*", "?")),
    ]
    if rng.random() < 0.4:
        fields.insert(0, second)
    return rng.choice((" ", " ", "  ", "\t")).join(fields)


def _start(rng: random.Random, tz: str) -> int:
    changes = transitions(tz)
    roll = rng.random()
    if changes and roll < 0.3:
        # within hours of a transition, either side: the next slots or their wall times meet it
        return rng.choice(changes) + rng.randint(-4 * 3600, 3 * 3600)
    if changes and roll < 0.5:
        return rng.choice(changes) - rng.randint(0, 2 * 86_400)  # up to two days before
    return rng.randint(_START_LOW, _START_HIGH)


def generate(seed: int, count: int, *, odd: float = 0.02, n: int = 6) -> list[Case]:
    """``count`` cases from ``seed``; ``odd`` is the share of field items spelled unusually."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        tz = rng.choice(ZONES)
        cases.append(Case(_expression(rng, odd), tz, _start(rng, tz), n))
    return cases
