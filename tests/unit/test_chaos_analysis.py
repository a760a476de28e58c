"""The chaos benchmark's verdicts on made-up histories: clean passes, and each fault is caught.

A harness that cannot fail proves nothing, and one that fails a correct engine is noise: both
directions are checked here, in milliseconds, without any component.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from chaos_analysis import Inputs, Received, Row  # noqa: E402
from chaos_faults import Fault  # noqa: E402
from chaos_report import summarize, tracebacks  # noqa: E402

T0 = datetime(2026, 12, 1, 12, 0, 0, 500000, tzinfo=UTC)
SLOTS = [datetime(2026, 12, 1, 12, 0, s, tzinfo=UTC) for s in range(1, 11)]
S = timedelta(seconds=1)


def run(name: str, slot: datetime, **fields: object) -> Row:
    values: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "name": name,
        "scheduled_for": slot,
        "trigger": "Schedule",
        "attempt": 1,
        "status": "Succeeded",
        "reason": None,
        "started_at": slot + 0.05 * S,
        "finished_at": slot + 0.1 * S,
        "replica": "r1",
        "error": None,
    }
    values.update(fields)
    return Row(**values)  # type: ignore[arg-type]


def got(row: Row) -> Received:
    assert row.started_at is not None
    return Received(row.name, row.scheduled_for, row.id, None, row.started_at + 0.01 * S)


def history() -> tuple[list[Row], list[Received]]:
    rows = [run(name, slot) for name in ("a", "b") for slot in SLOTS]
    return rows, [got(r) for r in rows]


def verdict(
    rows: list[Row], received: list[Received], faults: list[Fault] | None = None
) -> dict[str, object]:
    data = Inputs(
        configs={"a": "Forbid", "b": "Allow"},
        sleeps={"a": 0.0, "b": 0.0},
        start=T0,
        end=T0 + 10 * S,
        rows=rows,
        received=received,
        faults=faults or [],
    )
    return summarize(data, [], {"r1": 0}, {})


def counts(summary: dict[str, object]) -> dict[str, int]:
    keys = ("duplicates", "lost_records", "silent_gaps", "unfinished", "wrong_skip_reasons")
    return {k: summary[k]["count"] for k in keys}  # type: ignore[index]


def test_a_clean_history_passes() -> None:
    summary = verdict(*history())
    assert summary["passed"], summary["failures"]
    assert summary["slots"] == 20
    assert summary["outcomes"] == {"Succeeded": 20}


def test_each_kind_of_wrong_slot_is_caught() -> None:
    rows, received = history()
    rows.pop(3)  # a@4: no row at all, though the receiver got it: a silent gap and a lost record
    received.append(got(rows[5]))  # a@7 executed twice
    rows[7] = run("a", SLOTS[8], status="Pending", started_at=None, finished_at=None)  # a@9
    received = [r for r in received if (r.name, r.slot) != ("a", SLOTS[8])]
    found = counts(verdict(rows, received))
    assert found == {
        "duplicates": 1,
        "lost_records": 1,
        "silent_gaps": 1,
        "unfinished": 1,
        "wrong_skip_reasons": 0,
    }


def test_concurrency_forbid_is_true_only_while_another_attempt_executes() -> None:
    rows, received = history()
    long = run("a", SLOTS[0], finished_at=SLOTS[1] + 0.5 * S)  # a@1 runs across a@2's instant
    rows[0], received[0] = long, got(long)
    rows[1] = run("a", SLOTS[1], status="Skipped", reason="ConcurrencyForbid", started_at=None)
    rows[5] = run("a", SLOTS[5], status="Skipped", reason="ConcurrencyForbid", started_at=None)
    received = [r for r in received if r.slot not in (SLOTS[1], SLOTS[5]) or r.name != "a"]
    summary = verdict(rows, received)
    assert summary["skipped"] == {"ConcurrencyForbid": {"total": 2, "wrong": 1}}
    assert "12:00:06" in summary["wrong_skip_reasons"]["examples"][0]  # type: ignore[index]


def test_an_owner_lost_attempt_stops_executing_when_its_replica_is_killed() -> None:
    """The reaper marks it Failed long after; Forbid may not skip slots after the kill for it."""
    rows, received = history()
    kill = Fault("kill", SLOTS[0] + 0.5 * S, SLOTS[1], replica="r2")
    lost = run("a", SLOTS[0], replica="r2", status="Failed", reason="OwnerLost", finished_at=SLOTS[8])
    rows[0], received[0] = lost, got(lost)
    for i in (1, 4):
        rows[i] = run("a", SLOTS[i], status="Skipped", reason="ConcurrencyForbid", started_at=None)
    received = [r for r in received if r.name != "a" or r.slot not in (SLOTS[1], SLOTS[4])]
    summary = verdict(rows, received, [kill])
    assert summary["skipped"] == {"ConcurrencyForbid": {"total": 2, "wrong": 2}}


def test_store_unavailable_and_missed_need_a_fault_near_the_slot() -> None:
    rows, received = history()
    outage = Fault("postgres", SLOTS[1], SLOTS[2])
    skips = {1: "StoreUnavailable", 2: "Missed", 8: "StoreUnavailable", 9: "Missed", 6: "Suspended"}
    for i, reason in skips.items():
        rows[i] = run("a", SLOTS[i], status="Skipped", reason=reason, started_at=None)
    received = [r for r in received if r.name != "a" or r.slot not in {SLOTS[i] for i in skips}]
    summary = verdict(rows, received, [outage])
    assert summary["skipped"] == {
        "StoreUnavailable": {"total": 2, "wrong": 1},
        "Missed": {"total": 2, "wrong": 1},
        "Suspended": {"total": 1, "wrong": 1},
    }


def test_tracebacks_are_counted_and_chained_ones_grouped(tmp_path: Path) -> None:
    log = tmp_path / "operator-r1-1.log"
    log.write_text(
        "2026-12-01 12:00:01,000 ERROR   sundial.engine: task sundial-fire crashed\n"
        "Traceback (most recent call last):\n"
        '  File "/x/asyncio/selector_events.py", line 995, in _read_ready\n'
        "    data = self._sock.recv(self.max_size)\n"
        "ConnectionResetError: [Errno 104] Connection reset by peer\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "/w/operator/sundial/engine/firing.py", line 56, in _fire\n'
        "    gates = await self.concurrency.gate([w for w, _ in live])\n"
        '  File "/w/operator/sundial/leases/redis.py", line 127, in holder\n'
        "    return await self._redis.get(key)\n"
        "redis.exceptions.ConnectionError: Error while reading from 127.0.0.1:6379\n"
        "2026-12-01 12:00:02,000 INFO    sundial.engine: fine again\n"
    )
    found = tracebacks([log])
    assert (found["count"], found["errors"], found["distinct"]) == (2, 1, 1)
    (error,) = found["first"]
    assert error["exception"].startswith("redis.exceptions.ConnectionError")
    assert error["caused_by"] == ["ConnectionResetError: [Errno 104] Connection reset by peer"]
    assert error["frame"] == "sundial/leases/redis.py:127 in holder"
    assert error["logged_as"].endswith("task sundial-fire crashed")
