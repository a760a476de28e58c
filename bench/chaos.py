"""Chaos benchmark: CronConfigs firing every second while replicas die and stores go away.

Real control plane, PostgreSQL and Redis; ``--replicas`` operator processes (`sundial run`) and an
HTTP receiver in its own process that logs every request. ``--configs`` CronConfigs fire every
second (http jobs; mostly Forbid, ~10% Allow, a few Replace; a few hold the request 1.5 s so
Forbid and Replace have something to act on). Once all fire, a ``--seconds`` fault window
(seeded): a replica SIGKILLed and restarted every ~15 s, Redis restarted empty once, PostgreSQL
stopped ``--pg-down`` s once, kube-apiserver restarted once, never two at a time. Then it settles,
stops the operators with SIGTERM and checks every (CronConfig, slot) of the window: duplicates,
executions without a record, slots without any record, unfinished runs, skip reasons that are
not true, tracebacks in the logs; plus takeover and catch-up times. Exit 0 only if all is clean;
1 if anything was found; 2 if a component could not start.

    .venv/bin/python bench/chaos.py                     # make chaos: 200 configs, 180 s
    .venv/bin/python bench/chaos.py --seconds 60 --configs 60 --pg-down 15 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import sqlalchemy as sa
import yaml
from chaos_analysis import Inputs, slots_of
from chaos_data import NAMESPACE, load, read_received, read_rows, save
from chaos_faults import GAP, ApiServer, Fault, Replicas, Targets, plan, run_plan
from chaos_report import render, summarize
from common import ROOT, BenchFailure, kubectl, receiver, run
from tests.support import services

SLOW_SECONDS = 1.5


@contextlib.contextmanager
def components() -> Iterator[tuple[services.ControlPlane, services.Postgres, services.RedisServer]]:
    """Like ``common.components``, but the PostgreSQL and Redis processes can be stopped and restarted."""
    with (
        services.control_plane(controller_manager=False) as plane,
        services.postgres() as pg,
        services.redis_server() as redis,
    ):
        kubectl(plane, "apply", "-f", str(ROOT / "crds"))
        kubectl(plane, "wait", "--for", "condition=established", "crd/cronconfigs.sundial.io")
        from sundial.store import migrate

        migrate.upgrade(pg.url)
        yield plane, pg, redis


def cronconfigs(count: int, url: str) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, float]]:
    """The CronConfigs, each one's concurrencyPolicy and how long the receiver holds its requests."""
    docs, policies, sleeps = [], {}, {}
    for i in range(count):
        name = f"chaos-{i:03d}"
        policy = "Allow" if i % 10 == 0 else "Replace" if i % 50 == 5 else "Forbid"
        sleep = SLOW_SECONDS if policy == "Replace" or i % 50 == 25 else 0.0
        policies[name], sleeps[name] = policy, sleep
        hook = f"{url}/hook/{name}" + (f"?sleep={sleep}" if sleep else "")
        docs.append(
            {
                "apiVersion": "sundial.io/v1alpha1",
                "kind": "CronConfig",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "schedule": "* * * * * *",
                    "concurrencyPolicy": policy,
                    "job": {"http": {"url": hook, "method": "POST", "body": {"config": name}}},
                },
            }
        )
    return docs, policies, sleeps


def wait_firing(plane: services.ControlPlane, db: sa.Engine, count: int, timeout: float = 240) -> None:
    """Until every CronConfig has ``status.nextScheduleTime`` and at least one started run."""
    deadline = time.monotonic() + timeout
    scheduled = fired = 0
    while time.monotonic() < deadline:
        got = subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(plane.kubeconfig),
                "get",
                "cronconfigs",
                "-n",
                NAMESPACE,
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            check=False,
            env=plane.env(),
        )
        if got.returncode == 0:
            items = json.loads(got.stdout)["items"]
            scheduled = sum(1 for o in items if (o.get("status") or {}).get("nextScheduleTime"))
        with db.connect() as conn:
            fired = conn.execute(
                sa.text(
                    "SELECT count(DISTINCT name) FROM cron_runs "
                    "WHERE namespace = :ns AND started_at IS NOT NULL"
                ),
                {"ns": NAMESPACE},
            ).scalar_one()
        if scheduled == count and fired == count:
            return
        time.sleep(1)
    raise BenchFailure(
        f"only {scheduled} of {count} CronConfigs scheduled and {fired} fired in {timeout:.0f}s"
    )


class RecordWatch:
    """Once a second: has every slot of each outage that ended got a final record yet?

    The run history keeps no insert time, so this is watched live.
    """

    def __init__(self, db: sa.Engine, configs: int) -> None:
        self.db, self.configs = db, configs
        self.pending: dict[int, tuple[datetime, datetime, int]] = {}
        self.done: dict[int, datetime | None] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="record-watch", daemon=True)
        self.thread.start()

    def add(self, index: int, fault: Fault) -> None:
        if fault.kind == "kill":
            return
        slots = slots_of(fault.start, max(fault.end, fault.start + timedelta(seconds=1)))
        with self.lock:
            self.pending[index] = (slots[0], slots[-1], self.configs * len(slots))

    def _run(self) -> None:
        query = sa.text(
            "SELECT count(*) FROM (SELECT DISTINCT name, scheduled_for FROM cron_runs "
            "WHERE namespace = :ns AND scheduled_for >= :a AND scheduled_for <= :b "
            "AND status NOT IN ('Pending', 'Running') AND trigger <> 'Manual') AS recorded"
        )
        while not self.stopped.wait(1.0):
            with self.lock:
                pending = list(self.pending.items())
            for index, (first, last, expected) in pending:
                try:
                    with self.db.connect() as conn:
                        got = conn.execute(query, {"ns": NAMESPACE, "a": first, "b": last}).scalar_one()
                except sa.exc.SQLAlchemyError:
                    continue  # PostgreSQL is down: the next poll asks again
                if got >= expected:
                    with self.lock:
                        self.done[index] = datetime.now(UTC)
                        self.pending.pop(index, None)

    def close(self) -> dict[int, datetime | None]:
        self.stopped.set()
        self.thread.join(timeout=30)
        with self.lock:
            return {**dict.fromkeys(self.pending), **self.done}


def settle(db: sa.Engine, end: datetime, seconds: float, timeout: float = 60) -> None:
    """After the window: ``seconds`` of calm, then (bounded) until no slot of it is unfinished."""
    time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + seconds)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.connect() as conn:
            left = conn.execute(
                sa.text(
                    "SELECT count(*) FROM cron_runs WHERE namespace = :ns AND scheduled_for <= :e "
                    "AND status IN ('Pending', 'Running')"
                ),
                {"ns": NAMESPACE, "e": end},
            ).scalar_one()
        if not left:
            return
        time.sleep(1)


def chaos(args: argparse.Namespace, seed: int, workdir: Path) -> tuple[Inputs, dict[str, int | None]]:
    """Start everything, fire, inflict the faults, settle, stop: the data to judge."""
    names = [f"r{i + 1}" for i in range(args.replicas)]
    try:
        steps = plan(
            args.seconds,
            rng=random.Random(seed),
            replicas=names,
            pg_down=args.pg_down,
            api_down=args.api_down,
            kill_every=args.kill_every,
        )
    except ValueError as err:
        raise BenchFailure(str(err)) from None
    print(
        f"seed {seed}; logs in {workdir}; plan: "
        + ", ".join(f"{s.kind}{' ' + s.replica if s.replica else ''} @+{s.at}s" for s in steps)
    )
    with components() as (plane, pg, redis), receiver(workdir) as (url, received_path):
        assert pg.server is not None
        db = sa.create_engine(pg.url, pool_pre_ping=True)
        docs, policies, sleeps = cronconfigs(args.configs, url)
        kubectl(plane, "create", "namespace", NAMESPACE)
        kubectl(plane, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs).encode())
        env = {
            "SUNDIAL_DATABASE_URL": pg.url,
            "SUNDIAL_REDIS_URL": redis.url,
            "SUNDIAL_NAMESPACES": NAMESPACE,
            "SUNDIAL_LEASE_TTL_SECONDS": str(args.lease_ttl),
        }
        replicas = Replicas(plane, env, workdir)
        watch = RecordWatch(db, args.configs)
        codes: dict[str, int | None] = {}
        try:
            for name in names:
                replicas.start(name)
            wait_firing(plane, db, args.configs)
            t0 = time.time()
            start = datetime.fromtimestamp(t0, UTC)
            print(f"all {args.configs} CronConfigs fire; fault window starts at {start.time()}", flush=True)
            targets = Targets(replicas, pg.server, redis, ApiServer(plane))
            faults = run_plan(
                steps, targets, t0, pg_down=args.pg_down, api_down=args.api_down, on_fault=watch.add
            )
            end = max(start + timedelta(seconds=args.seconds), faults[-1].end + timedelta(seconds=GAP))
            print(f"fault window over at {end.time()}; settling", flush=True)
            settle(db, end, args.settle + args.lease_ttl)
            codes = replicas.stop_all()
        finally:
            replicas.kill_all()
            complete = watch.close()
        rows = read_rows(db)
        db.dispose()
    received = read_received(received_path)
    stats_path = received_path.with_suffix(".stats.json")
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    return Inputs(policies, sleeps, start, end, rows, received, faults, complete, stats), codes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=180, help="fault window")
    parser.add_argument("--configs", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--pg-down", type=float, default=20.0, help="seconds PostgreSQL is stopped")
    parser.add_argument("--api-down", type=float, default=3.0, help="seconds kube-apiserver is stopped")
    parser.add_argument("--kill-every", type=float, default=15.0, help="seconds between replica kills")
    parser.add_argument("--lease-ttl", type=float, default=10.0, help="SUNDIAL_LEASE_TTL_SECONDS")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after the window, plus the TTL")
    parser.add_argument("--workdir", type=Path, help="where data and logs go (default: a new temp dir)")
    parser.add_argument("--analyse", type=Path, metavar="DIR", help="judge the saved data of an earlier run")
    args = parser.parse_args()
    if args.analyse:
        data, codes, meta, logs = load(args.analyse)
        workdir = args.analyse
    else:
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sundial-chaos-"))
        workdir.mkdir(parents=True, exist_ok=True)
        data, codes = chaos(args, seed, workdir)
        meta = {
            "configs": args.configs,
            "policies": dict(Counter(data.configs.values())),
            "replicas": args.replicas,
            "seconds": args.seconds,
            "seed": seed,
            "lease_ttl": args.lease_ttl,
            "pg_down": args.pg_down,
            "workdir": str(workdir),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        save(workdir, data, codes, meta)
        logs = sorted(workdir.glob("operator-*.log"))
    summary = summarize(data, logs, codes, meta)
    print(render(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if not summary["passed"]:
        raise BenchFailure(
            f"{len(summary['failures'])} kinds of problems (above); data and logs in {workdir}"
        )


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (a test's timeout, CI cancelling) unwinds like Ctrl-C: every component is stopped."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    try:
        run(main)
    except services.ComponentError as err:
        print(f"COMPONENT MISSING: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
