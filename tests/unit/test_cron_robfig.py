"""Differential test: sundial's schedules against robfig/cron v3.0.1, the parser behind CronJobs.

Thousands of generated cases per run, from a seed that changes every run (``SUNDIAL_CRON_SEED``
repeats one). Each case is parsed and stepped by robfig (``hack/robfig``) and by sundial's own path
(:func:`sundial.scheduling.preview.preview`, which ``sundial next`` and the engine share). Outcomes:

* both refuse, or both accept and fire at the same instants;
* the DST rule applies (a matching wall time skipped or repeated by a transition): sundial must
  match the rule computed from robfig's parsed fields (:func:`tests.support.robfig.rule_slots`);
* robfig's own DST defects (30-minute shifts, transitions off the hour or at midnight): the same;
* every other difference must be one of the deviations the README documents.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sundial.scheduling import ScheduleError, parse_schedule
from sundial.scheduling.preview import preview
from tests.support import robfig
from tests.support.cron_cases import DAYS, Case, generate

CASES = 6000
Respelled = tuple[str, str, robfig.Answer] | None  # deviation, robfig's spelling, robfig's answer to it
_DESCRIPTOR = re.compile(r"@(yearly|annually|monthly|weekly|daily|midnight|hourly|every)\b", re.IGNORECASE)
_SUNDIAL_EVERY = re.compile(r"(\d+h)?(\d+m)?(\d+s)?")


def _seed() -> int:
    given = os.environ.get("SUNDIAL_CRON_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


def _day_fields(expr: str) -> tuple[str, str] | None:
    fields = expr.split()
    if expr.startswith("@") or len(fields) not in (5, 6):
        return None
    return fields[-3], fields[-1]


# -- the documented deviations -----------------------------------------------------------------------


def _refusals(expr: str, answer: robfig.Answer) -> dict[str, str]:
    """What robfig accepts and sundial refuses on purpose, with a phrase sundial's message has."""
    found: dict[str, str] = {}
    fields = expr.split()
    if expr.startswith("@"):
        word, _, arg = expr.partition(" ")
        ours = _SUNDIAL_EVERY.fullmatch(arg.strip().lower())
        if word.lower() == "@every" and not (ours and any(int(g[:-1]) for g in ours.groups() if g)):
            found["Go durations in @every (1.5h, 500ms, 30s1m, 0s)"] = "@every interval"
        return found
    for i, text in enumerate(fields):
        items = text.split(",")
        if "" in items:
            found["an empty list item (1,,2)"] = "empty list item"
        day = i >= len(fields) - 3 and i != len(fields) - 2
        if not day and any(item.split("/")[0] == "?" for item in items):
            found["? outside the day fields"] = "'?' is only allowed"
        if "+" in text:
            found["a + sign (+5)"] = "is not a number"
        if any(re.match(r"[*?]-", item) for item in items):
            found["a range from * (*-5, which robfig reads as *)"] = "a range runs from"
    if answer.next[:1] == [0]:
        found["a schedule that can never fire (0 0 30 2 *)"] = "can never fire"
    return found


def _dow_values(item: str) -> list[int]:
    base, _, step = item.partition("/")
    first, dash, last = base.partition("-")

    def value(token: str) -> int:
        return int(token) if token.isdigit() else DAYS.index(token.lower())

    low = value(first)
    high = value(last) if dash else (max(6, low) if step else low)
    return list(range(low, high + 1, int(step or 1)))


def _canonical(expr: str) -> tuple[str, str] | None:
    """What robfig refuses and sundial accepts on purpose: (deviation, robfig's spelling of it)."""
    if expr.startswith("@"):
        word, _, arg = expr.partition(" ")
        canon = f"{word.lower()} {arg.strip().lower()}".strip()
        if canon != expr:
            return "descriptors and @every units in any case (@Daily, @EVERY 90S)", canon
        return None
    fields = expr.split()
    items = fields[-1].split(",")
    if not any("7" in re.split(r"[-/]", item)[:2] and not item.startswith(("*", "?")) for item in items):
        return None
    rewritten = []
    for item in items:
        parts = re.split(r"[-/]", item)
        if "7" in parts[:2] and not item.startswith(("*", "?")):
            rewritten.append(",".join(str(v % 7) for v in _dow_values(item)))
        else:
            rewritten.append(item)
    return "7 as Sunday in day-of-week (5-7, 7)", " ".join([*fields[:-1], ",".join(rewritten)])


def _robfig_dst_defect(tz: str, low: int, high: int) -> bool:
    """A transition robfig's day and hour loops step across wrongly lies near ``[low, high]``.

    robfig walks hours with ``Add(time.Hour)`` and days from a midnight it rebuilds, so a
    30-minute shift (Lord Howe), a transition off the whole hour (Chatham, at :45) or one at
    midnight (Santiago, Havana) makes it skip or add a day or an hour.
    """
    zone = ZoneInfo(tz)
    for moment in robfig.transitions(tz):
        if low - 3 * 3600 < moment <= high:
            before, after = datetime.fromtimestamp(moment - 1, zone), datetime.fromtimestamp(moment, zone)
            assert before.utcoffset() is not None and after.utcoffset() is not None
            shift = (after.utcoffset() - before.utcoffset()).total_seconds()  # type: ignore[operator]
            if shift % 3600 or (before.minute, before.second) != (59, 59) or before.hour == 23:
                return True
    return False


# -- the comparison ----------------------------------------------------------------------------------


@dataclass
class Tally:
    seed: int
    kinds: Counter[str] = field(default_factory=Counter)
    deviations: dict[str, str] = field(default_factory=dict)  # deviation -> first example
    failures: list[str] = field(default_factory=list)

    def fail(self, case: Case, problem: str) -> None:
        self.failures.append(f"{case.expr!r} in {case.tz} after {case.start}: {problem}")

    def deviation(self, name: str, case: Case) -> None:
        self.kinds["documented deviation"] += 1
        self.deviations.setdefault(name, case.expr)


def _sundial(case: Case) -> list[int] | str:
    try:
        after = datetime.fromtimestamp(case.start, UTC)
        return [int(s.timestamp()) for s in preview(case.expr, tz=case.tz, count=case.n, after=after)]
    except ScheduleError as err:
        return str(err)


def _check_engine_views(case: Case, slots: list[int], tally: Tally) -> None:
    """The engine's other questions (catch-up, missed runs) must agree with the same slots."""
    start = datetime.fromtimestamp(case.start, UTC)
    schedule = parse_schedule(case.expr, tz=case.tz, anchor=start)
    moments = [datetime.fromtimestamp(s, UTC) for s in slots]
    for earlier, later in zip([start, *moments], moments, strict=False):
        previous = schedule.prev_before(later)
        if earlier is not start and previous != earlier:
            tally.fail(case, f"prev_before({later}) = {previous}, expected {earlier}")
    if moments and schedule.count_between(start, moments[-1]) != len(moments):
        tally.fail(
            case, f"count_between = {schedule.count_between(start, moments[-1])}, expected {len(moments)}"
        )


def _compare(
    case: Case, answer: robfig.Answer, ours: list[int] | str, tally: Tally, respelled: Respelled
) -> None:
    """Judge sundial's answer ``ours`` for ``case`` against robfig's ``answer``."""
    if answer.error is not None:
        if isinstance(ours, str):
            tally.kinds["both refuse"] += 1
        elif respelled is None:
            tally.fail(case, f"robfig refuses ({answer.error}), sundial accepts: not a documented deviation")
        else:  # sundial must fire as robfig does for the spelling robfig takes
            name, spelling, canonical = respelled
            tally.deviation(name, case)
            _compare(replace(case, expr=spelling), canonical, ours, tally, None)
        return
    if isinstance(ours, str):
        reasons = _refusals(case.expr, answer)
        named = [name for name, phrase in reasons.items() if phrase in ours]
        if not named:
            tally.fail(case, f"sundial refuses ({ours}) what robfig accepts: not a documented deviation")
        else:
            tally.deviation(named[0], case)
        return
    theirs = [t for t in answer.next if t]
    if answer.bits is None:  # @every: no zone, no DST
        tally.kinds["@every"] += 1
        if ours != theirs:
            tally.fail(case, f"sundial {ours}, robfig {theirs}")
        return
    rule = robfig.rule_slots(answer.bits, case.tz, case.start, case.n)
    if rule.rule_applied:
        tally.kinds["DST rule"] += 1
    elif rule.slots[: len(theirs)] == theirs:
        tally.kinds["identical to robfig"] += 1
    elif _robfig_dst_defect(case.tz, case.start, max([*rule.slots, *theirs])):
        tally.kinds["robfig DST defect"] += 1
    else:
        tally.fail(case, f"the rule from robfig's fields gives {rule.slots}, robfig {theirs}: test bug?")
        return
    if ours != rule.slots:
        tally.fail(
            case, f"sundial {ours}, expected {rule.slots} (robfig {theirs}, rule applied {rule.rule_applied})"
        )
        return
    _check_engine_views(case, ours, tally)


def differential(binary: Path, seed: int, count: int = CASES) -> Tally:
    cases = generate(seed, count)
    answers = robfig.ask(binary, [(c.expr, c.tz, c.start, c.n) for c in cases])
    deviating = {
        i: canon
        for i, (c, a) in enumerate(zip(cases, answers, strict=True))
        if a.error and (canon := _canonical(c.expr))
    }
    respelled = robfig.ask(
        binary, [(s, cases[i].tz, cases[i].start, cases[i].n) for i, (_, s) in deviating.items()]
    )
    canonical = {i: (*deviating[i], a) for i, a in zip(deviating, respelled, strict=True)}
    tally = Tally(seed)
    for i, (case, answer) in enumerate(zip(cases, answers, strict=True)):
        _compare(case, answer, _sundial(case), tally, canonical.get(i))
    return tally


def test_sundial_fires_when_robfig_does_or_as_documented(robfig_next: Path) -> None:
    seed = _seed()
    tally = differential(robfig_next, seed)
    summary = f"seed {seed} (SUNDIAL_CRON_SEED={seed} repeats it): {dict(tally.kinds)}"
    print(summary)
    for name, example in sorted(tally.deviations.items()):
        print(f"  deviation: {name}, e.g. {example!r}")
    assert not tally.failures, summary + "\n" + "\n".join(tally.failures[:15])
    # the run compared enough of each kind to mean something
    assert tally.kinds["identical to robfig"] >= CASES // 2, summary
    assert tally.kinds["DST rule"] >= 50, summary
    assert tally.kinds["@every"] >= 100, summary
