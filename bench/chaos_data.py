"""The chaos benchmark's raw data: read from the run history and the receiver, saved and loaded.

Everything the verdict is computed from is saved in the work directory (``run.json``,
``cron_runs.jsonl``, ``received.jsonl`` and the operator logs), so ``bench/chaos.py --analyse DIR``
recomputes it, and an engine bug found by a run can be studied after the components are gone.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from chaos_analysis import Inputs, Received, Row
from chaos_faults import Fault

NAMESPACE = "chaos"


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def read_rows(db: sa.Engine) -> list[Row]:
    """Every run of the benchmark's namespace."""
    with db.connect() as conn:
        result = conn.execute(
            sa.text(
                "SELECT id, name, scheduled_for, trigger, attempt, status, reason, started_at, "
                "finished_at, replica, error FROM cron_runs WHERE namespace = :ns"
            ),
            {"ns": NAMESPACE},
        ).all()
    return [
        Row(
            id=str(r.id),
            name=r.name,
            scheduled_for=r.scheduled_for.astimezone(UTC),
            trigger=r.trigger,
            attempt=r.attempt,
            status=r.status,
            reason=r.reason,
            started_at=_utc(r.started_at),
            finished_at=_utc(r.finished_at),
            replica=r.replica,
            error=r.error,
        )
        for r in result
    ]


def read_received(path: Path) -> list[Received]:
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        try:
            slot = datetime.fromisoformat(rec["slot"]).astimezone(UTC)
        except ValueError:
            continue  # not a request of sundial's
        t = datetime.fromtimestamp(rec["t"], UTC)
        out.append(Received(rec["name"], slot, rec["run"], rec["attempt"], t))
    return out


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def save(workdir: Path, data: Inputs, exit_codes: dict[str, int | None], meta: dict[str, Any]) -> None:
    """run.json and cron_runs.jsonl beside received.jsonl and the operator logs."""
    with (workdir / "cron_runs.jsonl").open("w") as out:
        for row in data.rows:
            fields = asdict(row)
            for key in ("scheduled_for", "started_at", "finished_at"):
                fields[key] = _stamp(fields[key])
            out.write(json.dumps(fields) + "\n")
    run = {
        "meta": meta,
        "configs": data.configs,
        "sleeps": data.sleeps,
        "start": data.start.isoformat(),
        "end": data.end.isoformat(),
        "faults": [f.to_json() for f in data.faults],
        "complete_at": {str(i): _stamp(t) for i, t in data.complete_at.items()},
        "exit_codes": exit_codes,
        "receiver_stats": data.receiver_stats,
    }
    (workdir / "run.json").write_text(json.dumps(run, indent=2) + "\n")


def load(workdir: Path) -> tuple[Inputs, dict[str, int | None], dict[str, Any], list[Path]]:
    """What :func:`save` wrote: the inputs, exit codes, meta data and operator logs of a run."""
    run = json.loads((workdir / "run.json").read_text())
    rows = []
    for line in (workdir / "cron_runs.jsonl").read_text().splitlines():
        fields = json.loads(line)
        for key in ("scheduled_for", "started_at", "finished_at"):
            fields[key] = _time(fields[key])
        rows.append(Row(**fields))
    faults = [
        Fault(**{**f, "start": datetime.fromisoformat(f["start"]), "end": datetime.fromisoformat(f["end"])})
        for f in run["faults"]
    ]
    data = Inputs(
        configs=run["configs"],
        sleeps=run["sleeps"],
        start=datetime.fromisoformat(run["start"]),
        end=datetime.fromisoformat(run["end"]),
        rows=rows,
        received=read_received(workdir / "received.jsonl"),
        faults=faults,
        complete_at={int(i): _time(t) for i, t in run["complete_at"].items()},
        receiver_stats=run.get("receiver_stats", {}),
    )
    return data, run["exit_codes"], run["meta"], sorted(workdir.glob("operator-*.log"))
