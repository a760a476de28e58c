"""Per-slot jitter that every replica and every restart computes identically."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sundial.scheduling.base import to_utc

__all__ = ["jitter_offset"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def jitter_offset(uid: str, slot: datetime, jitter_seconds: int) -> float:
    """Seconds in ``[0, jitter_seconds)`` to delay ``slot`` by; 0 when jitter is off.

    Derived from a keyed BLAKE2b hash of (uid, slot) rather than a random source, so the delay is
    stable across replicas and restarts, and different CronConfigs on the same schedule spread
    out instead of firing together. Microsecond resolution keeps the result exactly representable
    as a timedelta and strictly below the bound.
    """
    if jitter_seconds <= 0:
        return 0.0
    micros = (to_utc(slot) - _EPOCH) // _MICROSECOND
    digest = hashlib.blake2b(f"{uid}\x00{micros}".encode(), digest_size=8, person=b"sundial.jitter").digest()
    span = jitter_seconds * 1_000_000
    return (int.from_bytes(digest, "big") % span) / 1_000_000
