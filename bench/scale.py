"""Scale: N schedules in sundial, in the native CronJob controller and in arq, side by side.

Real control plane (etcd, kube-apiserver and kube-controller-manager with its cronjob and job
controllers), PostgreSQL and Redis; one operator replica (`sundial run`, a subprocess). For each
scale point N, in one run and in turn (``--kinds``):

* ``spread``: N CronConfigs ``S * * * * *`` with S = i mod 60 (every minute, spread over it);
* ``aligned``: N CronConfigs ``0 * * * * *`` (all on the same instant: the top-of-the-hour pile-up);
* ``spread-http``/``aligned-http``: the same with an ``http`` job to a receiver in its own process
  (bench/chaos_receiver.py, listen backlog 1024), whose arrival times cross-check the run records;
* ``native``: N CronJobs ``* * * * *`` (bench/scale_others.py);
* ``arq-spread``/``arq-aligned``: arq's cron jobs on the same Redis (bench/arq_worker.py);
* ``sustained``: ``--sustained`` every-second CronConfigs each (runs asked for per second), in
  increasing order until sundial falls behind (bench/scale_sundial.py).

sundial's lag is ``started_at - scheduled_for`` from its run records; a slot without a run in the
window is missed, one with two is a duplicate. ``--plot`` draws the lag distributions.

    .venv/bin/python bench/scale.py --configs 1000 --minutes 1                      # make bench
    .venv/bin/python bench/scale.py --configs 100,1000,10000 --minutes 3 --kinds all \\
        --sustained 1000,2000,5000 --plot docs/bench-lag.png --json bench.json      # make bench-full
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

from common import BenchFailure, components, run
from scale_others import arq, native
from scale_parts import Result, summary
from scale_plot import plot
from scale_sundial import every_minute, sustained

ALL = "spread,aligned,spread-http,aligned-http,native,arq-spread,arq-aligned"
HEADER = (
    "| kind | N | lag p50 ms | p90 | p99 | max | missed | twice | ran p50 / p99 ms | ready s "
    "| status s | CPU s / 1,000 runs | peak RSS MiB | KiB / CronConfig | status patches/s | API req/s "
    "| DB statements / run |"
)


def _ms(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _opt(v: float | None, fmt: str) -> str:
    return format(v, fmt) if v is not None else ""


def _row(r: Result) -> str:
    if not r.lags_ms:
        return (
            f"| {r.kind} | {r.configs:,} | no runs | | | | {r.missed:,} of {r.expected:,} | {r.duplicates} |"
            + " |" * 9
        )
    lag = " | ".join(_ms(v) for v in summary(r.lags_ms))
    runs = len(r.lags_ms)
    got = r.receiver_lags_ms
    recv = f"{_ms(statistics.median(got))} / {_ms(summary(got)[2])}" if got else ""
    cpu = f"{1000 * r.cpu_s / runs:.2f}" if r.cpu_s is not None and runs else ""
    per = f"{r.peak_rss_mib * 1024 / r.configs:.1f}" if r.peak_rss_mib else ""
    return (
        f"| {r.kind} | {r.configs:,} | {lag} | {r.missed:,} of {r.expected:,} | {r.duplicates} | {recv} "
        f"| {_opt(r.ready_s, '.1f')} | {_opt(r.status_s, '.1f')} | {cpu} "
        f"| {_opt(r.peak_rss_mib, '.0f')} | {per} "
        f"| {_opt(r.patches_per_s, '.1f')} | {_opt(r.api_per_s, '.1f')} | {_opt(r.db_per_run, '.2f')} |"
    )


def _sustained_row(r: Result) -> str:
    if not r.lags_ms:
        return f"| {r.configs:,} | 0 | 0 | no run started | | | {r.missed:,} of {r.expected:,} | | | | | |"
    p50, _, p99, worst = summary(r.lags_ms)
    cpu = f"{1000 * r.cpu_s / len(r.lags_ms):.2f}" if r.cpu_s is not None else ""
    return (
        f"| {r.configs:,} | {r.runs_per_s or 0:,.0f} | {r.recorded_per_s or 0:,.0f} "
        f"| {_ms(p50)} | {_ms(p99)} | {_ms(worst)} | {r.missed:,} of {r.expected:,} | {r.duplicates} "
        f"| {_opt(r.ready_s, '.1f')} | {cpu} "
        f"| {_opt(r.peak_rss_mib, '.0f')} | {_opt(r.db_per_run, '.2f')} |"
    )


def _ratios(results: list[Result]) -> list[str]:
    lines = []
    for n in sorted({r.configs for r in results}):
        by = {r.kind: r for r in results if r.configs == n and r.lags_ms}
        for kind in ("spread", "aligned"):
            if kind not in by:
                continue
            ours = max(statistics.median(by[kind].lags_ms), 0.001)
            for other in ("native", f"arq-{kind}"):
                if other in by:
                    theirs = statistics.median(by[other].lags_ms)
                    lines.append(f"N={n:,} {kind}: {other} p50 lag / sundial p50 lag = {theirs / ours:,.0f}x")
    return lines


def _save(args: argparse.Namespace, results: list[Result]) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="1000", help="comma-separated scale points")
    parser.add_argument("--minutes", type=int, default=1, help="measured window per every-minute phase")
    parser.add_argument(
        "--kinds", default="spread,aligned,native,arq-spread,arq-aligned", help=f"or all ({ALL})"
    )
    parser.add_argument(
        "--sustained", default="", help="every-second CronConfigs per sustained phase, e.g. 1000,5000"
    )
    parser.add_argument(
        "--sustained-seconds", type=int, default=60, help="measured window per sustained phase"
    )
    parser.add_argument(
        "--grace", type=int, default=60, help="seconds the native controller gets after the window"
    )
    parser.add_argument("--profile", help="py-spy each sundial phase's window into this directory")
    parser.add_argument("--plot", help="draw the lag distributions into this PNG")
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    kinds = (ALL if args.kinds == "all" else args.kinds).split(",")
    results: list[Result] = []
    held: list[Result] = []
    with components(controller_manager="native" in kinds) as (plane, db, redis):
        for n in (int(x) for x in args.configs.split(",")):
            for kind in kinds:
                if kind == "native":
                    results.append(native(args, plane, n))
                elif kind.startswith("arq-"):
                    results.append(arq(args, redis, n, kind))
                else:
                    results.append(every_minute(args, plane, db, redis, n, kind))
                _save(args, results)  # a later phase that fails must not lose the earlier ones
                print(_row(results[-1]), flush=True)
        for n in (int(x) for x in args.sustained.split(",") if x):
            held.append(sustained(args, plane, db, redis, n))
            _save(args, results + held)
            print(_sustained_row(held[-1]), flush=True)
            if held[-1].missed or not held[-1].lags_ms or summary(held[-1].lags_ms)[2] > 1000:
                print(f"[sustained {n}] fell behind; larger points skipped", flush=True)
                break
    machine = (
        f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}"
    )
    date = datetime.now(UTC).isoformat(timespec="minutes")
    print(f"machine: {machine}")
    print(f"date: {date}, window {args.minutes} min per every-minute phase")
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for r in results:
        print(_row(r))
    for line in _ratios(results):
        print(line)
    if held:
        print(f"sustained, every-second no-op CronConfigs, {args.sustained_seconds} s window:")
        print(
            "| N | runs started/s | recorded/s | lag p50 ms | p99 | max | missed | twice "
            "| ready s after apply | CPU s / 1,000 runs | peak RSS MiB | DB statements / run |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in held:
            print(_sustained_row(r))
    if args.plot:
        plot(results, Path(args.plot), machine=machine, date=date)
        print(f"plot: {args.plot}")
    wrong = [
        r
        for r in results
        if r.kind in ("spread", "aligned", "spread-http", "aligned-http") and (r.missed or r.duplicates)
    ]
    if wrong:
        raise BenchFailure(
            "; ".join(f"{r.kind} {r.configs}: {r.missed} missed, {r.duplicates} twice" for r in wrong)
        )


if __name__ == "__main__":
    run(main)
