"""What the chaos benchmark checks, from the receiver's log, the run history and the fault record.

Every (CronConfig, slot) of the window is judged on its own: executed at most once, every
execution recorded as run, at least one record, nothing left unfinished, and every skip reason
true by the clock (another attempt really executing, a store really down, a replica really
killed). Pure functions of the data, so a verdict can be re-checked from the JSON summary.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chaos_faults import Fault

RAN = frozenset({"Succeeded", "Failed", "TimedOut", "Cancelled"})
"""Statuses that, with ``started_at``, say an attempt executed."""
UNFINISHED = frozenset({"Pending", "Running"})
MARGIN = timedelta(seconds=3)
"""Slack around a fault's start and end for the reasons it may cause (StoreUnavailable, Missed)."""
ON_TIME = timedelta(seconds=1)
OUTAGES = ("redis", "postgres", "apiserver")
STORES = ("redis", "postgres")
FOREVER = datetime.max.replace(tzinfo=UTC)
AFTERMATH = timedelta(seconds=30)
"""How long after a fault's end trouble is still attributed to it."""
EXAMPLES = 8
GAP_BUCKETS = ((0.25, "< 0.25 s"), (1.0, "0.25-1 s"), (math.inf, ">= 1 s"))
"""Wrong ConcurrencyForbid skips by how long before the slot the last other attempt had ended."""


@dataclass(frozen=True)
class Received:
    name: str
    slot: datetime
    run: str
    attempt: int | None
    t: datetime


@dataclass(frozen=True)
class Row:
    id: str
    name: str
    scheduled_for: datetime
    trigger: str
    attempt: int
    status: str
    reason: str | None
    started_at: datetime | None
    finished_at: datetime | None
    replica: str | None
    error: str | None

    @property
    def ran(self) -> bool:
        return self.status in RAN and self.started_at is not None

    @property
    def outcome(self) -> str:
        return f"{self.status}/{self.reason}" if self.reason else self.status


@dataclass
class Inputs:
    configs: dict[str, str]
    """CronConfig name -> concurrencyPolicy."""
    sleeps: dict[str, float]
    """CronConfig name -> seconds the receiver holds its requests (0: answered at once)."""
    start: datetime
    end: datetime
    rows: list[Row]
    received: list[Received]
    faults: list[Fault]
    complete_at: dict[int, datetime | None] = field(default_factory=dict)
    """Index in ``faults`` of an outage -> when every slot of it first had a final record."""
    receiver_stats: dict[str, Any] = field(default_factory=dict)
    """What the receiver said of itself: its event-loop lag and CPU time."""


def slots_of(start: datetime, end: datetime) -> list[datetime]:
    """Whole seconds from the window's start to its end."""
    first = datetime.fromtimestamp(math.ceil(start.timestamp()), UTC)
    return [first + timedelta(seconds=i) for i in range(int((end - first).total_seconds()) + 1)]


def _secs(delta: timedelta) -> float:
    return round(delta.total_seconds(), 3)


def _at(fault_time: datetime, start: datetime) -> float:
    return round((fault_time - start).total_seconds(), 1)


def _spread(values: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of sorted values."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
    return {"p50": round(statistics.median(values), 1), "p99": round(p99, 1), "max": round(values[-1], 1)}


class Analysis:
    def __init__(self, data: Inputs) -> None:
        self.data = data
        self.slots = slots_of(data.start, data.end)
        self.slot_set = slot_set = set(self.slots)
        self.by_slot: dict[tuple[str, datetime], list[Row]] = defaultdict(list)
        self.by_id: dict[str, Row] = {}
        for row in data.rows:
            self.by_id[row.id] = row
            if row.trigger != "Manual":
                self.by_slot[(row.name, row.scheduled_for)].append(row)
        self.received: dict[tuple[str, datetime], list[Received]] = defaultdict(list)
        for rec in data.received:
            if rec.slot in slot_set:
                self.received[(rec.name, rec.slot)].append(rec)
        self.kills = [f for f in data.faults if f.kind == "kill"]
        self.intervals = self._executions()

    # ------------------------------------------------------------------ what executed when
    def effective_end(self, row: Row) -> datetime:
        """When an attempt stopped executing: its finish, or for ``OwnerLost`` the kill of its replica."""
        if row.reason == "OwnerLost" and row.started_at is not None:
            kills = [k.start for k in self.kills if k.replica == row.replica and k.start >= row.started_at]
            if kills:
                return min(kills)
        return row.finished_at or FOREVER

    def _executions(self) -> dict[str, list[tuple[datetime, datetime, str]]]:
        """Per CronConfig: (start, end, run id) of every attempt that executed, by its record or,
        if the record does not say so, by the receiver."""
        out: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
        for row in self.data.rows:
            if row.started_at is not None:
                out[row.name].append((row.started_at, self.effective_end(row), row.id))
        for rec in self.data.received:
            known = self.by_id.get(rec.run)
            if known is None or known.started_at is None:
                held = timedelta(seconds=self.data.sleeps.get(rec.name, 0.0))
                end = known.finished_at if known is not None and known.finished_at else rec.t + held
                out[rec.name].append((rec.t, end, rec.run))
        return out

    def executing_at(self, name: str, instant: datetime, other_than: str) -> bool:
        return any(s <= instant < e and rid != other_than for s, e, rid in self.intervals.get(name, ()))

    # ------------------------------------------------------------------ the checks
    def cause(self, slot: datetime) -> str:
        """The fault a slot's trouble is attributed to: the last one begun by then (with MARGIN),
        unless it ended more than AFTERMATH before the slot."""
        begun = [f for f in self.data.faults if f.start - MARGIN <= slot]
        if not begun:
            return "before any fault"
        last = max(begun, key=lambda f: f.start)
        return last.kind if slot <= last.end + AFTERMATH else "no fault nearby"

    def found(self, items: list[tuple[datetime, str]], **extra: Any) -> dict[str, Any]:
        """A check's result: how many, per fault, and examples from each fault in turn."""
        causes = [(self.cause(slot), text) for slot, text in sorted(items, key=lambda i: i[0])]
        by_fault = Counter(c for c, _ in causes)
        examples: list[str] = []
        for rank in range(EXAMPLES):
            for kind in by_fault:
                texts = [t for c, t in causes if c == kind]
                if rank < len(texts) and len(examples) < EXAMPLES:
                    examples.append(f"[{kind}] {texts[rank]}")
        return {"count": len(items), "by_fault": dict(by_fault), **extra, "examples": examples}

    def duplicates(self) -> dict[str, Any]:
        dups = {key: recs for key, recs in self.received.items() if len(recs) > 1}
        same_run = sum(1 for recs in dups.values() if len({r.run for r in recs}) < len(recs))
        items = []
        for (name, slot), recs in dups.items():
            rows = [self.by_id.get(r.run) for r in recs]
            text = f"{name}@{slot.time()}: " + ", ".join(
                f"run {r.run[:8]} at {(r.t - slot).total_seconds():+.2f}s "
                + (f"attempt {row.attempt} {row.outcome} on {row.replica}" if row else "no record")
                for r, row in zip(recs, rows, strict=True)
            )
            items.append((slot, text))
        return self.found(items, same_run_twice=same_run)

    def lost_records(self) -> dict[str, Any]:
        lost: list[tuple[datetime, str]] = []
        received_ids = {r.run for r in self.data.received}
        for (name, slot), recs in sorted(self.received.items(), key=lambda kv: kv[0][1]):
            for rec in recs:
                row = self.by_id.get(rec.run)
                if row is not None and row.ran:
                    continue
                fallback = [
                    r for r in self.by_slot.get((name, slot), ()) if r.ran and r.id not in received_ids
                ]
                if not fallback:
                    said = f"{row.outcome} started_at={row.started_at}" if row else "no row with that id"
                    lost.append((slot, f"{name}@{slot.time()} run {rec.run[:8]}: {said}"))
        return self.found(lost)

    def silent_gaps(self) -> dict[str, Any]:
        gaps = [(n, s) for n in self.data.configs for s in self.slots if not self.by_slot.get((n, s))]
        per_second = Counter(s for _, s in gaps)
        return self.found(
            [(s, f"{n}@{s.time()}") for n, s in gaps],
            configs=len({n for n, _ in gaps}),
            seconds={f"+{_at(s, self.data.start)}s": n for s, n in sorted(per_second.items())[:20]},
        )

    def unfinished(self) -> dict[str, Any]:
        rows = [r for r in self.data.rows if r.status in UNFINISHED]
        return self.found(
            [
                (
                    r.scheduled_for,
                    f"{r.name}@{r.scheduled_for.time()} {r.status} on {r.replica} ({r.trigger})",
                )
                for r in rows
            ]
        )

    def owner_lost_alive(self) -> dict[str, Any]:
        """``OwnerLost`` runs whose replica was not killed while they ran: its owner was alive."""
        wrong = []
        for row in self.data.rows:
            if row.reason != "OwnerLost" or row.scheduled_for not in self.slot_set:
                continue
            began = row.started_at or row.scheduled_for
            ended = row.finished_at or FOREVER
            if not any(k.replica == row.replica and began <= k.start <= ended for k in self.kills):
                wrong.append((row.scheduled_for, f"{row.name}@{row.scheduled_for.time()} on {row.replica}"))
        return self.found(wrong)

    def _near(self, slot: datetime, faults: Iterable[Fault]) -> bool:
        return any(f.start - MARGIN <= slot <= f.end + MARGIN for f in faults)

    def skip_is_true(self, row: Row) -> tuple[bool, str]:
        """Whether a Skipped row's reason matches what really happened, and if not, why not."""
        slot, reason = row.scheduled_for, row.reason
        if reason == "ConcurrencyForbid":
            policy = self.data.configs.get(row.name)
            if policy != "Forbid":
                return False, f"concurrencyPolicy is {policy}"
            # at the instant; or when the gate decided, if it decided on time (a late timer is not
            # a wrong reason), but not at a catch-up long after: that must be judged by the instant
            decided = row.finished_at or slot
            if self.executing_at(row.name, slot, row.id) or (
                slot < decided <= slot + ON_TIME and self.executing_at(row.name, decided, row.id)
            ):
                return True, ""
            ended = [e for s, e, rid in self.intervals.get(row.name, ()) if rid != row.id and e <= slot]
            if not ended:
                return False, "no other attempt was executing (none had run before)"
            gap = (slot - max(ended)).total_seconds()
            return False, f"no other attempt was executing (the last one ended {gap:.3f}s before)"
        if reason == "StoreUnavailable":
            if self._near(slot, (f for f in self.data.faults if f.kind in STORES)):
                return True, ""
            return False, "no PostgreSQL or Redis outage near the slot"
        if reason == "Missed":
            if self._near(slot, (f for f in self.data.faults if f.kind in (*OUTAGES, "kill"))):
                return True, ""
            return False, "no kill or outage near the slot"
        return False, "a reason no fault of this benchmark causes"

    def skips(self) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
        by_reason: dict[str, dict[str, int]] = defaultdict(lambda: {"total": 0, "wrong": 0})
        wrong: list[tuple[datetime, str]] = []
        wrong_by: Counter[str] = Counter()
        near: Counter[str] = Counter()
        for slot in self.slots:
            for name in self.data.configs:
                for row in self.by_slot.get((name, slot), ()):
                    if row.status != "Skipped":
                        continue
                    reason = row.reason or "(none)"
                    by_reason[reason]["total"] += 1
                    ok, why = self.skip_is_true(row)
                    if not ok:
                        by_reason[reason]["wrong"] += 1
                        wrong_by[reason] += 1
                        if "ended" in why:
                            gap = float(why.rsplit("ended ", 1)[1].split("s", 1)[0])
                            near[next(label for limit, label in GAP_BUCKETS if gap < limit)] += 1
                        wrong.append((slot, f"{reason} {name}@{slot.time()} on {row.replica}: {why}"))
        return dict(by_reason), self.found(
            wrong,
            by_reason=dict(wrong_by),
            forbid_after_last_attempt_ended={b: near[b] for _, b in GAP_BUCKETS if near[b]},
        )

    def outcomes(self) -> dict[str, int]:
        """Per slot of the window, the outcome of its last attempt."""
        counts: Counter[str] = Counter()
        for name in self.data.configs:
            for slot in self.slots:
                rows = self.by_slot.get((name, slot))
                if rows:
                    counts[max(rows, key=lambda r: r.attempt).outcome] += 1
        return dict(counts.most_common())

    def receiver(self) -> dict[str, Any]:
        """Whether the receiver kept up: every run recorded Succeeded must have reached it."""
        got = {r.run for recs in self.received.values() for r in recs}
        window_rows = [r for key, rows in self.by_slot.items() if key[1] in self.slot_set for r in rows]
        unseen = [r for r in window_rows if r.status == "Succeeded" and r.id not in got]
        lags = sorted((r.t - r.slot).total_seconds() * 1000 for recs in self.received.values() for r in recs)
        refused = [r for r in window_rows if r.status == "Failed" and "Connect" in (r.error or "")]
        delays = sorted(
            (r.t - row.started_at).total_seconds() * 1000
            for recs in self.received.values()
            for r in recs
            if (row := self.by_id.get(r.run)) is not None and row.started_at is not None
        )
        early = [r for recs in self.received.values() for r in recs if r.t < r.slot]
        return {
            "requests_total": len(self.data.received),
            "requests_in_window": sum(len(v) for v in self.received.values()),
            "runs_started_in_window": sum(1 for r in window_rows if r.started_at is not None),
            "succeeded_without_request": len(unseen),
            "failed_connecting": len(refused),
            "after_slot_ms": _spread(lags),
            "after_start_ms": _spread(delays),
            "own": self.data.receiver_stats,
            "before_slot": {
                "count": len(early),
                "examples": [
                    f"{r.name}@{r.slot.time()} run {r.run[:8]} {(r.t - r.slot).total_seconds():+.3f}s"
                    for r in early[:EXAMPLES]
                ],
            },
        }

    def failures_by_reason(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for (_, slot), rows in self.by_slot.items():
            if slot not in self.slot_set:
                continue
            for row in rows:
                if row.status in ("Failed", "TimedOut"):
                    entry = out.setdefault(row.outcome, {"count": 0, "example": row.error})
                    entry["count"] += 1
        return out
