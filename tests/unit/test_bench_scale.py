"""The scale benchmark's arithmetic: profile tables and lag summaries from made-up inputs."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from profile_top import top  # noqa: E402
from scale_parts import percentile, summary  # noqa: E402


def test_profile_top_counts_self_and_total_per_function(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text(
        "main (app.py:1);fire (firing.py:40);gate (concurrency.py:10) 30\n"
        "main (app.py:1);fire (firing.py:41);_start (firing.py:99) 50\n"
        "main (app.py:1);idle (loop.py:5) 20\n"
        "not a stack line\n"
    )
    table = top(raw, 10)
    assert table.startswith("100 samples")
    self_part, total_part = table.split("| total % | function |")
    assert "| 50.0 | `_start (firing.py)` |" in self_part
    assert "| 30.0 | `gate (concurrency.py)` |" in self_part
    assert "| 100.0 | `main (app.py)` |" in total_part
    assert "| 80.0 | `fire (firing.py)` |" in total_part  # two lines of one function: one row


def test_summary_is_p50_p90_p99_max() -> None:
    values = [float(v) for v in range(1, 101)]
    assert summary(values) == (50.5, 90.0, 99.0, 100.0)
    assert percentile([5.0], 0.99) == 5.0
