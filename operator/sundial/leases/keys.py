"""Every Redis key sundial writes, in one place (as arq does), so the layout is reviewable."""

from __future__ import annotations

from datetime import datetime

PREFIX = "sundial"

HANDED_BACK = "sundial:handed-back"
"""The owner of a ``Running`` row no replica has: the command line handed it back (a requeue), and
the first replica to look resumes it. No hostname contains a colon, so no replica is named so."""


def slot(uid: str, scheduled_for: datetime, attempt: int) -> str:
    """Claim on one attempt of one slot: whoever holds it records and runs the attempt."""
    return f"{PREFIX}:slot:{uid}:{int(scheduled_for.timestamp() * 1000)}:{attempt}"


def running(uid: str) -> str:
    """Held while an attempt of the CronConfig runs: the cross-replica guard for ``Forbid``."""
    return f"{PREFIX}:running:{uid}"


def replica(name: str) -> str:
    """A replica's heartbeat; its absence means the replica's running attempts are orphaned."""
    return f"{PREFIX}:replica:{name}"


def beat(token: str, at: datetime) -> str:
    """A heartbeat's value: which incarnation beat, and when (ms), so others can tell a dead holder."""
    return f"{token}@{int(at.timestamp() * 1000)}"


def parse_beat(value: str | None) -> tuple[str, int] | None:
    """(token, beat ms) of a heartbeat value; None if absent."""
    if not value:
        return None
    token, _, ms = value.rpartition("@")
    return (token, int(ms)) if token and ms.isdigit() else (value, 0)


def members() -> str:
    """Sorted set of live replicas (score: heartbeat expiry, ms): who shares the slots."""
    return f"{PREFIX}:replicas"


def cancel(attempt: str) -> str:
    """Set by a replica that wants another replica's attempt cancelled (``Replace``)."""
    return f"{PREFIX}:cancel:{attempt}"


def retry_due(run_id: str) -> str:
    """When a recorded retry attempt may start (its backoff), for whoever adopts it."""
    return f"{PREFIX}:retry:{run_id}"


def reap(run_id: str) -> str:
    """Claim on taking over an abandoned run, so only one replica records the takeover."""
    return f"{PREFIX}:reap:{run_id}"


def drain() -> str:
    """Held by the one replica writing the journal to the database."""
    return f"{PREFIX}:journal:drain"
