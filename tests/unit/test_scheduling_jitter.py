"""Jitter: deterministic per (uid, slot), inside [0, jitter), stable across processes."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sundial.scheduling import jitter_offset

SLOT = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize("jitter", [-5, 0])
def test_disabled(jitter: int) -> None:
    assert jitter_offset("uid-1", SLOT, jitter) == 0.0


@pytest.mark.parametrize("jitter", [1, 7, 60, 3600, 86_400])
def test_in_range_and_deterministic(jitter: int) -> None:
    offsets = [jitter_offset(f"uid-{i}", SLOT + timedelta(minutes=i), jitter) for i in range(500)]
    assert all(0.0 <= o < jitter for o in offsets)
    assert offsets == [jitter_offset(f"uid-{i}", SLOT + timedelta(minutes=i), jitter) for i in range(500)]
    # Spread out: different configs on the same slot do not all fire together.
    assert len(set(offsets)) > 400 or jitter == 1
    assert max(offsets) > jitter * 0.8 and min(offsets) < jitter * 0.2


def test_depends_on_uid_and_slot_not_on_representation() -> None:
    same_instant = SLOT.astimezone(timezone(timedelta(hours=2)))
    assert jitter_offset("a", SLOT, 600) == jitter_offset("a", same_instant, 600)
    assert jitter_offset("a", SLOT, 600) != jitter_offset("b", SLOT, 600)
    assert jitter_offset("a", SLOT, 600) != jitter_offset("a", SLOT + timedelta(hours=1), 600)


def test_microsecond_resolution() -> None:
    offset = jitter_offset("a", SLOT, 600)
    assert offset * 1_000_000 == round(offset * 1_000_000)


def test_stable_across_processes() -> None:
    code = (
        "from datetime import datetime, UTC;"
        "from sundial.scheduling import jitter_offset;"
        "print(repr(jitter_offset('uid-x', datetime(2026, 5, 1, 2, 0, tzinfo=UTC), 600)))"
    )
    # A different hash seed proves nothing depends on Python's randomized str hashing.
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.strip()
    assert float(out) == jitter_offset("uid-x", SLOT, 600)


@pytest.mark.parametrize(
    ("uid", "slot", "jitter", "offset"),
    [
        ("0b6c1e2a-5d4f-4e8a-9a7b-3c2d1e0f9a8b", datetime(2026, 5, 1, 2, 0, tzinfo=UTC), 600, 296.507512),
        ("0b6c1e2a-5d4f-4e8a-9a7b-3c2d1e0f9a8b", datetime(2026, 5, 1, 2, 0, 1, tzinfo=UTC), 600, 574.18776),
        ("uid-1", SLOT, 5, 0.842113),
        ("uid-2", SLOT, 5, 1.937135),
        ("uid-1", datetime(2031, 3, 30, 0, 59, 59, 250000, tzinfo=UTC), 86_400, 8569.533472),
        ("f47ac10b-58cc-4372-a567-0e02b2c3d479", datetime(1999, 12, 31, 23, 0, tzinfo=UTC), 1, 0.721938),
        (
            "f47ac10b-58cc-4372-a567-0e02b2c3d479",
            datetime(2026, 10, 25, 2, 30, tzinfo=timezone(timedelta(hours=2))),
            3600,
            1949.905245,
        ),
    ],
)
def test_golden_values(uid: str, slot: datetime, jitter: int, offset: float) -> None:
    """Pinned outputs of version 0.1.0. Replicas of different versions run side by side during a
    rolling upgrade and must fire a slot at the same instant, and a restart must not move slots:
    changing the hash (its inputs, key, digest size or resolution) breaks both, so it must be a
    deliberate, announced change that updates these numbers."""
    assert jitter_offset(uid, slot, jitter) == offset
