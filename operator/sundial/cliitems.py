"""``sundial deadletters`` and ``sundial requeue``: a fan-out run's dead letters, read and sent back.

Both work on the run history directly (``--database-url``, default ``$SUNDIAL_DATABASE_URL``), so
they need no operator API. A requeue of a run that already ended hands the run back to the
operators: it becomes ``Running`` with no replica, and the first operator to look resumes it,
processes the requeued items and records the run's new outcome.
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sundial.leases.keys import HANDED_BACK
from sundial.settings import Settings


def _items(url: str | None) -> tuple[Any, Any]:
    from sundial.store.items import RunItems
    from sundial.store.store import RunStore

    store = RunStore(url or Settings().database_url)
    return store, RunItems(store.engine)


def _run_id(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise SystemExit(f"--run: {value!r} is not a run id (a UUID, as `sundial runs` shows it)") from None


def cmd_deadletters(args: argparse.Namespace) -> int:
    store, items = _items(args.database_url)
    try:
        letters = items.dead_letters(args.namespace, args.name, run_id=_run_id(args.run), limit=args.limit)
    finally:
        store.close()
    if args.output == "json":
        print(
            json.dumps(
                [
                    {
                        "runId": str(d.run_id),
                        "itemKey": d.key,
                        "attempts": d.attempts,
                        "error": d.error,
                        "item": d.item,
                        "updatedAt": d.updated_at.isoformat(),
                    }
                    for d in letters
                ],
                indent=2,
            )
        )
        return 0
    if not letters:
        print(f"no dead-lettered items for {args.namespace}/{args.name}")
        return 0
    rows = [("RUN", "ITEM", "ATTEMPTS", "DEAD-LETTERED", "ERROR")]
    for d in letters:
        error = (d.error or "").replace("\n", " ")
        rows.append(
            (
                str(d.run_id),
                d.key if len(d.key) <= 40 else d.key[:39] + "…",
                str(d.attempts),
                d.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                error if len(error) <= 100 else error[:99] + "…",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    store, items = _items(args.database_url)
    try:
        moved = items.requeue(
            args.namespace, args.name, run_id=_run_id(args.run), at=datetime.now(UTC), owner=HANDED_BACK
        )
    finally:
        store.close()
    if not moved:
        print(f"no dead-lettered items for {args.namespace}/{args.name}; nothing requeued")
        return 0
    for run_id, n in moved.items():
        what = "1 item" if n == 1 else f"{n} items"
        print(f"run {run_id}: {what} requeued; an operator resumes the run and records its new outcome")
    return 0


def add_commands(sub: Any) -> None:
    """The two verbs, on the ``sundial`` parser's subcommands."""
    dl = sub.add_parser("deadletters", help="list the dead-lettered items of a fan-out CronConfig")
    dl.add_argument("name")
    dl.add_argument("-n", "--namespace", default="default")
    dl.add_argument("--run", help="only this run (an id from `sundial runs`)")
    dl.add_argument("--limit", type=int, default=100)
    dl.add_argument("-o", "--output", choices=("table", "json"), default="table")
    dl.add_argument("--database-url", help="default: $SUNDIAL_DATABASE_URL")
    dl.set_defaults(fn=cmd_deadletters)

    rq = sub.add_parser("requeue", help="send dead-lettered items back for another round under the same run")
    rq.add_argument("name")
    rq.add_argument("-n", "--namespace", default="default")
    rq.add_argument("--run", help="only this run (default: every run of the CronConfig with dead letters)")
    rq.add_argument("--database-url", help="default: $SUNDIAL_DATABASE_URL")
    rq.set_defaults(fn=cmd_requeue)
