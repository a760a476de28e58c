"""The scale benchmark's plot: the fire-lag distributions of sundial, arq and the native controller.

One panel per workload (spread, aligned) at the largest scale point that has them: the share of
slots started within a lag (an empirical CDF on a log axis, so 1 ms and 60 s both read).
"""

from __future__ import annotations

from pathlib import Path

from scale_parts import Result

FLOOR_MS = 0.1
"""Lags below are drawn here: the native controller's whole-second timestamps give many 0 s lags."""
STYLE = {
    "spread": ("sundial, no-op handler", "tab:blue", "-"),
    "aligned": ("sundial, no-op handler", "tab:blue", "-"),
    "spread-http": ("sundial, http job (receiver)", "tab:cyan", "--"),
    "aligned-http": ("sundial, http job (receiver)", "tab:cyan", "--"),
    "arq-spread": ("arq", "tab:orange", "-"),
    "arq-aligned": ("arq", "tab:orange", "-"),
    "native": ("native CronJob controller", "tab:red", "-"),
}


def plot(results: list[Result], path: Path, *, machine: str, date: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(r.configs for r in results)
    at = [r for r in results if r.configs == n and r.lags_ms]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, workload in zip(axes, ("spread", "aligned"), strict=True):
        for r in at:
            if r.kind != "native" and workload not in r.kind:
                continue
            label, color, line = STYLE.get(r.kind, (r.kind, "gray", ":"))
            lags = r.receiver_lags_ms or r.lags_ms  # when the job's code ran, where known
            ordered = sorted(max(v, FLOOR_MS) for v in lags)
            share = [(i + 1) / len(ordered) for i in range(len(ordered))]
            ax.step(
                ordered,
                share,
                where="post",
                color=color,
                linestyle=line,
                label=f"{label} (p50 {_p50(ordered)})",
            )
        ax.set_xscale("log")
        ax.set_xlabel(f"fire lag, ms (log; below {FLOOR_MS} drawn at {FLOOR_MS})")
        ax.set_title(f"{n:,} every-minute schedules, {workload}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("share of slots started")
    fig.suptitle(
        f"fire lag: sundial vs arq vs the native CronJob controller ({machine}, {date})", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _p50(ordered: list[float]) -> str:
    mid = ordered[len(ordered) // 2]
    return f"{mid / 1000:.1f} s" if mid >= 1000 else f"{mid:.1f} ms"
