"""Cron fields: parsing them strictly, and matching naive wall-clock times against them.

Everything here works on *wall-clock* time with no zone attached; turning wall times into
instants (and DST) is :mod:`sundial.scheduling.wallclock`'s job. The parser is our own rather than
croniter's ``expand`` because users need precise messages ("minute field value 61 out of range
0-59") and because croniter gives some spellings surprising meanings (``5-5`` as the whole cycle,
wrapping ranges). The semantics are robfig/cron v3's, which Kubernetes CronJobs use, except where
the README's "Schedules and Kubernetes CronJobs" says otherwise; tests/unit/test_cron_robfig.py
compares the two on thousands of generated expressions in every run.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime

__all__ = ["CronFields", "parse_fields"]

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_TITLES = tuple(calendar.month_name[1:])
# Days a month can have at most (February counts its leap day: the schedule fires in leap years).
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# How far a search looks before giving up; the rarest valid schedule (29 February) fires at least
# every 8 years, e.g. 2096 -> 2104.
_SEARCH_YEARS = 9
_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0
    noun: str = "number"
    open_high: int | None = None  # where ``*`` and ``N/step`` end, if not at ``high``
    day: bool = False  # a day field: ``?`` is allowed and means ``*``


_SECOND = _FieldSpec("second", 0, 59)
_MINUTE = _FieldSpec("minute", 0, 59)
_HOUR = _FieldSpec("hour", 0, 23)
_DOM = _FieldSpec("day-of-month", 1, 31, day=True)
_MONTH = _FieldSpec("month", 1, 12, MONTH_NAMES, 1, "number or month name")
# 7 is Sunday too where it is written (``7``, ``5-7``), as in Vixie cron; it is folded onto 0 after
# parsing. ``*`` and ``N/step`` end at 6, as in robfig/cron: ``1/2`` is Mon, Wed, Fri, not Sunday.
_DOW = _FieldSpec("day-of-week", 0, 7, DAY_NAMES, 0, "number or day name", open_high=6, day=True)


def _value(token: str, spec: _FieldSpec, *, error: type[Exception]) -> int:
    if token.isascii() and token.isdigit():
        number = int(token)
        if not spec.low <= number <= spec.high:
            raise error(f"{spec.name} field value {token} out of range {spec.low}-{spec.high}")
        return number
    lowered = token.lower()
    if lowered in spec.names:
        return spec.names.index(lowered) + spec.name_base
    raise error(f"{spec.name} field value {token!r} is not a {spec.noun}")


def _parse_field(text: str, spec: _FieldSpec, *, error: type[Exception]) -> tuple[set[int], bool]:
    """Expand one field into its values; the flag says it holds a ``*`` (or ``?``) with step 1.

    That flag is robfig/cron's "star bit": a day field that has it does not restrict the day, so
    ``*,13`` and ``*/01`` in day-of-month count as ``*`` for the day-of-month/day-of-week rule.
    """
    values: set[int] = set()
    star = False
    open_high = spec.high if spec.open_high is None else spec.open_high
    for item in text.split(","):
        if item == "":
            raise error(f"{spec.name} field has an empty list item in {text!r}")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()):
                raise error(f"{spec.name} field step {step_text!r} is not a number")
            step = int(step_text)
            if step < 1:
                raise error(f"{spec.name} field step must be at least 1, got {step_text}")
        if base == "?" and not spec.day:
            raise error(f"'?' is only allowed in the day-of-month and day-of-week fields, not {spec.name}")
        if base in ("*", "?"):
            low, high = spec.low, open_high
            star = star or step == 1
        else:
            first, dash, last = base.partition("-")
            if first in ("*", "?"):
                raise error(
                    f"{spec.name} field range {base!r} starts at {first!r}: a range runs from a {spec.noun}"
                )
            if first == "" or (dash and last == ""):
                raise error(f"{spec.name} field value {item!r} is not a {spec.noun}")
            low = _value(first, spec, error=error)
            if dash:
                high = _value(last, spec, error=error)
                if high < low:
                    raise error(f"{spec.name} field range {base} goes backwards")
            else:
                # "5/15" means "from 5 to the end, every 15", as in robfig/cron.
                high = max(open_high, low) if slash else low
        values.update(range(low, high + 1, step))
    return values, star


def _describe_months(months: list[int]) -> str:
    names = [_MONTH_TITLES[m - 1] for m in months]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


@dataclass(frozen=True, slots=True)
class CronFields:
    """A parsed cron expression: sorted allowed values per field plus fast membership sets.

    Day matching follows robfig/cron: when both day fields are restricted a day matches if
    *either* does; when one of them holds a ``*`` or ``?`` with step 1 (also inside a list, as in
    ``*,13``) only the other one counts.
    """

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday
    days_any: bool
    weekdays_any: bool
    _sets: tuple[frozenset[int], ...] = field(init=False, repr=False, compare=False)
    _per_day: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sets = tuple(
            frozenset(v)
            for v in (self.seconds, self.minutes, self.hours, self.days, self.months, self.weekdays)
        )
        object.__setattr__(self, "_sets", sets)
        object.__setattr__(self, "_per_day", len(self.hours) * len(self.minutes) * len(self.seconds))

    # -- matching ---------------------------------------------------------------------------------

    def day_matches(self, year: int, month: int, day: int) -> bool:
        if month not in self._sets[4]:
            return False
        if self.days_any and self.weekdays_any:
            return True
        in_days = day in self._sets[3]
        if self.weekdays_any:
            return in_days
        in_weekdays = (date(year, month, day).weekday() + 1) % 7 in self._sets[5]
        if self.days_any:
            return in_weekdays
        return in_days or in_weekdays

    def matches(self, wall: datetime) -> bool:
        """Whether a wall-clock time (to the second) is one the expression names."""
        s = self._sets
        return (
            wall.second in s[0]
            and wall.minute in s[1]
            and wall.hour in s[2]
            and self.day_matches(wall.year, wall.month, wall.day)
        )

    def next_match(self, start: datetime) -> datetime | None:
        """The first matching wall time at or after ``start`` (whole seconds), within ~9 years."""
        seconds, minutes, hours, months = self.seconds, self.minutes, self.hours, self.months
        sec_set, min_set, hour_set, month_set = self._sets[0], self._sets[1], self._sets[2], self._sets[4]
        year, month, day = start.year, start.month, start.day
        hour, minute, second = start.hour, start.minute, start.second
        last_year = min(year + _SEARCH_YEARS, 9999)
        days_in_month = calendar.monthrange(year, month)[1]
        while True:
            if month not in month_set:
                i = bisect_left(months, month)
                if i == len(months):
                    year += 1
                    month = months[0]
                else:
                    month = months[i]
                if year > last_year:
                    return None
                days_in_month = calendar.monthrange(year, month)[1]
                day, hour, minute, second = 1, 0, 0, 0
                continue
            if day > days_in_month:
                month += 1
                if month > 12:
                    year += 1
                    month = 1
                if year > last_year:
                    return None
                if month in month_set:
                    days_in_month = calendar.monthrange(year, month)[1]
                day, hour, minute, second = 1, 0, 0, 0
                continue
            if not self.day_matches(year, month, day):
                day += 1
                hour, minute, second = 0, 0, 0
                continue
            if hour not in hour_set:
                i = bisect_left(hours, hour)
                if i == len(hours):
                    day += 1
                    hour, minute, second = 0, 0, 0
                    continue
                hour, minute, second = hours[i], 0, 0
            if minute not in min_set:
                i = bisect_left(minutes, minute)
                if i == len(minutes):
                    hour += 1
                    minute, second = 0, 0
                    continue
                minute, second = minutes[i], 0
            if second not in sec_set:
                i = bisect_left(seconds, second)
                if i == len(seconds):
                    minute += 1
                    second = 0
                    continue
                second = seconds[i]
            return datetime(year, month, day, hour, minute, second)

    def prev_match(self, start: datetime) -> datetime | None:
        """The last matching wall time at or before ``start`` (whole seconds), within ~9 years."""
        seconds, minutes, hours, months = self.seconds, self.minutes, self.hours, self.months
        sec_set, min_set, hour_set, month_set = self._sets[0], self._sets[1], self._sets[2], self._sets[4]
        year, month, day = start.year, start.month, start.day
        hour, minute, second = start.hour, start.minute, start.second
        first_year = max(year - _SEARCH_YEARS, 1)
        while True:
            if month not in month_set:
                i = bisect_right(months, month) - 1
                if i < 0:
                    year -= 1
                    month = months[-1]
                else:
                    month = months[i]
                if year < first_year:
                    return None
                day = calendar.monthrange(year, month)[1]
                hour, minute, second = 23, 59, 59
                continue
            if day < 1:
                month -= 1
                if month < 1:
                    year -= 1
                    month = 12
                if year < first_year:
                    return None
                day = calendar.monthrange(year, month)[1]
                hour, minute, second = 23, 59, 59
                continue
            if not self.day_matches(year, month, day):
                day -= 1
                hour, minute, second = 23, 59, 59
                continue
            if hour not in hour_set:
                i = bisect_right(hours, hour) - 1
                if i < 0:
                    day -= 1
                    hour, minute, second = 23, 59, 59
                    continue
                hour, minute, second = hours[i], 59, 59
            if minute not in min_set:
                i = bisect_right(minutes, minute) - 1
                if i < 0:
                    hour -= 1
                    minute, second = 59, 59
                    continue
                minute, second = minutes[i], 59
            if second not in sec_set:
                i = bisect_right(seconds, second) - 1
                if i < 0:
                    minute -= 1
                    second = 59
                    continue
                second = seconds[i]
            return datetime(year, month, day, hour, minute, second)

    def count_matches(self, first: datetime, last: datetime) -> int:
        """How many matching wall times lie in ``[first, last]`` (whole seconds).

        Works a day at a time, so a month of a per-second schedule costs ~30 steps, not 2.6M.
        """
        if last < first:
            return 0
        count = 0
        first_day, last_day = first.toordinal(), last.toordinal()
        for ordinal in range(first_day, last_day + 1):
            day = date.fromordinal(ordinal)
            if self.day_matches(day.year, day.month, day.day):
                low = _second_of_day(first) if ordinal == first_day else 0
                high = _second_of_day(last) + 1 if ordinal == last_day else _SECONDS_PER_DAY
                count += self._count_before(high) - self._count_before(low)
        return count

    def _count_before(self, second_of_day: int) -> int:
        """How many matching times of day lie strictly before ``second_of_day``."""
        if second_of_day >= _SECONDS_PER_DAY:
            return self._per_day
        hour, rest = divmod(second_of_day, 3600)
        minute, second = divmod(rest, 60)
        per_hour = len(self.minutes) * len(self.seconds)
        count = bisect_left(self.hours, hour) * per_hour
        if hour in self._sets[2]:
            count += bisect_left(self.minutes, minute) * len(self.seconds)
            if minute in self._sets[1]:
                count += bisect_left(self.seconds, second)
        return count


def _second_of_day(moment: datetime) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


def parse_fields(fields: list[str], *, error: type[Exception]) -> CronFields:
    """Parse 5 fields (minute first) or 6 (second first) into :class:`CronFields`.

    ``error`` is the exception type to raise, so the messages stay free of the caller's types.
    """
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise error(f"expected 5 or 6 fields, got {len(fields)}")
    specs = (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW)
    parsed = [_parse_field(text, spec, error=error) for text, spec in zip(fields, specs, strict=True)]
    weekdays = {d % 7 for d in parsed[5][0]}
    result = CronFields(
        seconds=tuple(sorted(parsed[0][0])),
        minutes=tuple(sorted(parsed[1][0])),
        hours=tuple(sorted(parsed[2][0])),
        days=tuple(sorted(parsed[3][0])),
        months=tuple(sorted(parsed[4][0])),
        weekdays=tuple(sorted(weekdays)),
        days_any=parsed[3][1],
        weekdays_any=parsed[5][1],
    )
    _check_can_fire(result, error=error)
    return result


def _check_can_fire(fields: CronFields, *, error: type[Exception]) -> None:
    """Refuse day/month combinations that never occur (``0 0 30 2 *``).

    Only day-of-month can be impossible, and only when it alone decides the day: a restricted
    day-of-week is ORed in and every weekday occurs every month. An exact check, cheaper and more
    precise than searching the next years for a firing.
    """
    if fields.days_any or not fields.weekdays_any:
        return
    if any(day <= _MAX_DAYS[month - 1] for month in fields.months for day in fields.days):
        return
    days = ",".join(str(d) for d in fields.days)
    raise error(
        f"day-of-month {days} never occurs in {_describe_months(list(fields.months))}: "
        "this schedule can never fire"
    )
