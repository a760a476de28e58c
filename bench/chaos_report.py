"""The chaos benchmark's timings, its scan of the operator logs, the verdict and the table.

Timings say how long each fault hurt: after a kill, how late the killed replica's CronConfigs
fired and from when on they were on time again; after an outage, from its end until every
CronConfig fired on time again and until every slot of the outage had a final record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from chaos_analysis import ON_TIME, OUTAGES, Analysis, Inputs, _at, _secs

TRACEBACK = "Traceback (most recent call last)"
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
FRAME = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
WATCH = timedelta(seconds=30)
"""How long after a kill its takeover is followed (or until the next fault)."""
CATCH_UP = timedelta(seconds=60)
BEFORE_NEXT = timedelta(seconds=2)


@dataclass
class Late:
    max_late: float | None
    last_bad: datetime | None
    not_run: int


def lateness(an: Analysis, names: Iterable[str], since: datetime, until: datetime) -> Late:
    """Over these CronConfigs' slots in [since, until]: the largest start lag, the last slot that
    did not start within ON_TIME (or at all), and how many did not start."""
    worst: timedelta | None = None
    last_bad: datetime | None = None
    not_run = 0
    names = list(names)
    for slot in an.slots:
        if not since <= slot <= until:
            continue
        for name in names:
            starts = [r.started_at for r in an.by_slot.get((name, slot), ()) if r.started_at]
            if not starts:
                not_run, last_bad = not_run + 1, slot
                continue
            late = min(starts) - slot
            worst = late if worst is None else max(worst, late)
            if late > ON_TIME:
                last_bad = slot
    return Late(_secs(worst) if worst is not None else None, last_bad, not_run)


def _until(an: Analysis, index: int, limit: timedelta) -> datetime:
    """The end of a fault's observation: ``limit`` after it, the window's end, or shortly before the
    next fault (whose victim claims slots up to a lookahead ahead)."""
    faults = an.data.faults
    following = [f.start - BEFORE_NEXT for f in faults[index + 1 :]]
    return min([faults[index].start + limit, an.data.end, *following[:1]])


def takeovers(an: Analysis) -> list[dict[str, Any]]:
    """Per kill: the CronConfigs the killed replica was running, how late and for how long."""
    fast = [n for n in an.data.configs if not an.data.sleeps.get(n)]
    out = []
    for i, kill in enumerate(an.data.faults):
        if kill.kind != "kill":
            continue
        victims = [
            n
            for n in fast
            if any(
                r.replica == kill.replica
                and kill.start - timedelta(seconds=3) <= r.scheduled_for <= kill.start
                for r in _rows_near(an, n, kill.start)
            )
        ]
        late = lateness(an, victims, kill.start, _until(an, i, WATCH))
        out.append(
            {
                "replica": kill.replica,
                "at_s": _at(kill.start, an.data.start),
                "restart_s": _secs(kill.end - kill.start),
                "configs": len(victims),
                "max_late_s": late.max_late,
                "on_time_after_s": _secs(late.last_bad + ON_TIME - kill.start) if late.last_bad else 0.0,
                "not_run": late.not_run,
            }
        )
    return out


def _rows_near(an: Analysis, name: str, at: datetime) -> list[Any]:
    base = at.replace(microsecond=0)
    return [r for k in range(-3, 1) for r in an.by_slot.get((name, base + timedelta(seconds=k)), ())]


def catch_ups(an: Analysis) -> list[dict[str, Any]]:
    """Per outage: from its end until all CronConfigs fire on time, and until its slots are recorded."""
    fast = [n for n in an.data.configs if not an.data.sleeps.get(n)]
    out = []
    for i, fault in enumerate(an.data.faults):
        if fault.kind not in OUTAGES:
            continue
        late = lateness(an, fast, fault.start, _until(an, i, CATCH_UP))
        complete = an.data.complete_at.get(i)
        out.append(
            {
                "kind": fault.kind,
                "at_s": _at(fault.start, an.data.start),
                "down_s": _secs(fault.end - fault.start),
                "max_late_s": late.max_late,
                "on_time_after_s": max(0.0, _secs(late.last_bad + ON_TIME - fault.end))
                if late.last_bad
                else 0.0,
                "records_complete_after_s": max(0.0, _secs(complete - fault.end)) if complete else None,
                "not_run": late.not_run,
            }
        )
    return out


def _traceback_at(lines: list[str], i: int) -> tuple[list[str], list[str], int]:
    """The frames and exception lines of the traceback starting at line ``i``, followed through
    chained exceptions ("During handling of the above exception..."), and the line after it."""
    frames: list[str] = []
    exceptions: list[str] = []
    j = i
    while j < len(lines) and TRACEBACK in lines[j]:
        j += 1
        while j < len(lines) and lines[j][:1].isspace():
            m = FRAME.search(lines[j])
            if m:
                where = m["path"]
                if "/sundial/" in where:
                    where = "sundial/" + where.split("/sundial/", 1)[1]
                frames.append(f"{where}:{m['line']} in {m['func']}")
            j += 1
        if j < len(lines):
            exceptions.append(lines[j].strip())
            j += 1
        k = j
        while k < len(lines) and not lines[k].strip():
            k += 1
        if k >= len(lines) or not lines[k].startswith(CHAINED):
            break
        k += 1
        while k < len(lines) and not lines[k].strip():
            k += 1
        j = k
    return frames, exceptions, j


def tracebacks(paths: Iterable[Path], shown: int = 10) -> dict[str, Any]:
    """Every ``Traceback (most recent call last)`` line in the logs, and the distinct errors they
    belong to: by the exception finally raised and the innermost sundial frame of its chain."""
    count = events = 0
    distinct: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        count += sum(1 for line in lines if TRACEBACK in line)
        i = 0
        while i < len(lines):
            if TRACEBACK not in lines[i]:
                i += 1
                continue
            events += 1
            frames, exceptions, after = _traceback_at(lines, i)
            ours = [f for f in frames if f.startswith("sundial/")]
            frame = ours[-1] if ours else (frames[-1] if frames else "(no frame)")
            raised = exceptions[-1] if exceptions else "(end of log)"
            entry = distinct.setdefault(
                (raised.split(":", 1)[0], frame),
                {
                    "exception": raised[:300],
                    "caused_by": [e[:200] for e in exceptions[:-1]],
                    "frame": frame,
                    "sundial_frames": ours,
                    "logged_as": lines[i - 1].strip()[:300] if i else "",
                    "log": path.name,
                    "count": 0,
                },
            )
            entry["count"] += 1
            i = after
    ordered = sorted(distinct.values(), key=lambda e: -int(e["count"]))
    return {"count": count, "errors": events, "distinct": len(ordered), "first": ordered[:shown]}


def summarize(
    data: Inputs, logs: Iterable[Path], exit_codes: dict[str, int | None], meta: dict[str, Any]
) -> dict[str, Any]:
    an = Analysis(data)
    skipped, wrong = an.skips()
    summary: dict[str, Any] = {
        **meta,
        "window": {"start": data.start.isoformat(), "end": data.end.isoformat(), "slots": len(an.slots)},
        "slots": len(an.slots) * len(data.configs),
        "outcomes": an.outcomes(),
        "skipped": skipped,
        "failed": an.failures_by_reason(),
        "duplicates": an.duplicates(),
        "lost_records": an.lost_records(),
        "silent_gaps": an.silent_gaps(),
        "unfinished": an.unfinished(),
        "wrong_skip_reasons": wrong,
        "tracebacks": tracebacks(logs),
        "takeovers": takeovers(an),
        "catch_up": catch_ups(an),
        "owner_lost_but_alive": an.owner_lost_alive(),
        "receiver": an.receiver(),
        "exit_codes": exit_codes,
        "faults": [f.to_json() for f in data.faults],
    }
    failures = [
        f"{summary[key]['count']} {label}"
        for key, label in (
            ("duplicates", "duplicate executions"),
            ("lost_records", "executions without a record that says they ran"),
            ("silent_gaps", "slots without any record (silent gaps)"),
            ("unfinished", "runs left Pending/Running"),
            ("wrong_skip_reasons", "skips with a wrong reason"),
            ("tracebacks", "tracebacks in the operator logs"),
        )
        if summary[key]["count"]
    ]
    failures += [f"operator {n} exited with {c} after SIGTERM" for n, c in exit_codes.items() if c != 0]
    failures += [f"fault {f.kind} {f.replica or ''}: {f.error}" for f in data.faults if f.error]
    if summary["receiver"]["succeeded_without_request"]:
        failures.append("the receiver missed requests of Succeeded runs: the harness cannot be trusted")
    summary["failures"], summary["passed"] = failures, not failures
    return summary


def _after(seconds: float | None) -> str:
    return "never (until the operators stopped)" if seconds is None else f"after {seconds}s"


def render(s: dict[str, Any]) -> str:
    """The summary as the table the benchmark prints."""
    rows: list[tuple[str, str]] = [
        ("slots (CronConfigs x seconds)", f"{s['slots']} ({s['configs']} x {s['window']['slots']})"),
        *((f"  {outcome}", str(n)) for outcome, n in s["outcomes"].items()),
        *(
            (f"skipped {reason}", f"{v['total']} ({v['wrong']} wrong)")
            for reason, v in sorted(s["skipped"].items())
        ),
        *((f"failed {reason}", str(v["count"])) for reason, v in sorted(s["failed"].items())),
    ]
    for key, label in (
        ("duplicates", "duplicates"),
        ("lost_records", "lost records"),
        ("silent_gaps", "silent gaps"),
        ("unfinished", "left unfinished"),
        ("wrong_skip_reasons", "wrong skip reasons"),
        ("tracebacks", "tracebacks"),
    ):
        n = s[key]["count"]
        rows.append((label, f"{n}{'  FAIL' if n else ''}"))
    rows.append(("OwnerLost, owner not killed", str(s["owner_lost_but_alive"]["count"])))
    rows.append(("operators' exit on SIGTERM", " ".join(f"{k}={v}" for k, v in s["exit_codes"].items())))
    rc = s["receiver"]
    after_start, after_slot = rc["after_start_ms"], rc["after_slot_ms"]
    rows += [
        ("receiver requests / runs started", f"{rc['requests_in_window']} / {rc['runs_started_in_window']}"),
        (
            "  received after the run started",
            "p50 {p50} ms, p99 {p99} ms, max {max} ms".format(**after_start),
        ),
        ("  received after the slot", "p50 {p50} ms, p99 {p99} ms, max {max} ms".format(**after_slot)),
        (
            "  receiver's own loop lag, CPU",
            "p50 {p50} ms, p99 {p99} ms, max {max} ms".format(**rc["own"].get("loop_lag_ms", {}))
            + f", {rc['own'].get('cpu_seconds')} s CPU",
        ),
        ("  received before the slot", str(rc["before_slot"]["count"])),
        ("  Succeeded but never received", str(rc["succeeded_without_request"])),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [
        f"== chaos: {s['configs']} CronConfigs, {s['replicas']} replicas, {s['seconds']} s window, "
        f"seed {s['seed']}, lease TTL {s['lease_ttl']} s",
        *(f"{k.ljust(width)}  {v}" for k, v in rows),
        "takeover after each kill (killed replica's CronConfigs):",
        *(
            f"  {t['replica']} at +{t['at_s']}s (back in {t['restart_s']}s): {t['configs']} configs, "
            f"max late {t['max_late_s']}s, on time again after {t['on_time_after_s']}s, "
            f"not run {t['not_run']}"
            for t in s["takeovers"]
        ),
        "catch-up after each outage (all CronConfigs):",
        *(
            f"  {c['kind']} at +{c['at_s']}s, down {c['down_s']}s: on time again {c['on_time_after_s']}s "
            f"after its end, every slot recorded {_after(c['records_complete_after_s'])}, "
            f"max late {c['max_late_s']}s, not run {c['not_run']}"
            for c in s["catch_up"]
        ),
    ]
    for key, label in (
        ("duplicates", "duplicates"),
        ("lost_records", "lost records"),
        ("silent_gaps", "silent gaps"),
        ("unfinished", "left unfinished"),
        ("wrong_skip_reasons", "wrong skip reasons"),
        ("owner_lost_but_alive", "OwnerLost though the owner was not killed"),
    ):
        if s[key]["count"]:
            lines.append(f"{label} by fault: {s[key].get('by_fault', {})}, e.g.:")
            lines += [f"  {e}" for e in s[key]["examples"]]
    if s["silent_gaps"]["count"]:
        lines.append(f"  silent gaps per second: {s['silent_gaps']['seconds']}")
    gaps = s["wrong_skip_reasons"]["forbid_after_last_attempt_ended"]
    if gaps:
        lines.append(f"  wrong ConcurrencyForbid by how long before the slot the last attempt ended: {gaps}")
    if s["receiver"]["before_slot"]["count"]:
        lines.append("executed before their slot, e.g.:")
        lines += [f"  {e}" for e in s["receiver"]["before_slot"]["examples"]]
    tbs = s["tracebacks"]
    if tbs["count"]:
        lines.append(f"{tbs['count']} tracebacks: {tbs['errors']} errors logged, {tbs['distinct']} distinct:")
    for tb in tbs["first"]:
        lines.append(f"  x{tb['count']}: {tb['exception']}")
        lines += [f"    caused by: {cause}" for cause in tb["caused_by"]]
        where = " -> ".join(f.removeprefix("sundial/") for f in tb["sundial_frames"]) or tb["frame"]
        lines.append(f"    at {where} ({tb['log']})")
        lines.append(f"    logged as: {tb['logged_as']}")
    lines.append("PASSED" if s["passed"] else "FAILED: " + "; ".join(s["failures"]))
    return "\n".join(lines)
