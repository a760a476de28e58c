"""arq's cron jobs with the scale benchmark's schedules: the scheduler Python users pick without Kubernetes.

One arq worker (its own process, the same Redis as sundial) with N cron jobs: ``spread`` runs
job i at second i mod 60 of every minute, ``aligned`` all at second 0. arq's defaults except
two, both in its favour: ``microsecond=0`` (its default fires at .123456 past the second, which
would count as lag here) and ``max_jobs=N`` (its default of 10 at a time would queue an aligned
minute for seconds). Each run writes one line, ``name scheduled_ms started_s``: the scheduled
instant is the one arq puts in the job id of a unique cron job, ``name:unix_ms``.

    python bench/arq_worker.py REDIS_URL N spread|aligned QUEUE OUT
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker

OUT: IO[str] | None = None


async def noop(ctx: dict[str, Any]) -> None:
    started = time.time()
    name, scheduled_ms = str(ctx["job_id"]).rsplit(":", 1)
    assert OUT is not None
    OUT.write(f"{name} {scheduled_ms} {started:.6f}\n")


def main() -> None:
    global OUT
    redis_url, n, kind, queue, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    OUT = open(out, "a", buffering=1)  # noqa: SIM115 - one line per run, flushed, for the worker's life
    jobs = [
        cron(noop, name=f"c-{i:05d}", second=(i % 60 if kind == "spread" else 0), microsecond=0)
        for i in range(n)
    ]
    worker = Worker(
        functions=[],
        cron_jobs=jobs,
        redis_settings=RedisSettings.from_dsn(redis_url),
        queue_name=queue,
        max_jobs=max(n, 10),
        keep_result=0,
    )
    print("arq worker ready", flush=True)
    worker.run()


if __name__ == "__main__":
    main()
