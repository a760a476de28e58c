"""What following N concurrent Kubernetes Jobs costs: API requests per second and operator CPU.

Real control plane with kube-controller-manager (its Job controller creates the Pods), PostgreSQL
and Redis, one operator replica. N one-shot CronConfigs with a ``template`` job fire at the same
instant, so N Jobs run at once. Then, for ``--hold`` seconds, nothing changes: the operator's API
requests (its own counter, ``sundial_kube_requests_total``) and CPU show the cost of following
them. Then the benchmark plays the kubelet (every Pod's status set to ``Succeeded``), the real Job
controller completes the Jobs, and it measures how long until every run is recorded.

    .venv/bin/python bench/jobs_follow.py --jobs 1000 --hold 60
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from common import BenchFailure, components, cpu_seconds, kubectl, metric_sum, rss_mib, run, stop
from kubernetes import client
from tests.support.operator import OperatorProcess

from sundial.kube import load_client

REQUESTS = "sundial_kube_requests_total"
NAMESPACE = "bench-jobs"


def _statuses(db_url: str) -> dict[str, int]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT status, count(*) FROM cron_runs WHERE namespace = :ns GROUP BY status"),
                {"ns": NAMESPACE},
            )
            return {str(status): int(n) for status, n in rows}
    finally:
        engine.dispose()


def _wait(what: str, check: Any, timeout: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise BenchFailure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - start


def _complete(job: client.V1Job) -> bool:
    return any(c.type == "Complete" and c.status == "True" for c in (job.status.conditions or ()))


def _play_kubelet(core: client.CoreV1Api, pods: list[client.V1Pod]) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def finish(pod: client.V1Pod) -> None:
        body = {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": c.name,
                        "image": c.image,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "terminated": {
                                "exitCode": 0,
                                "reason": "Completed",
                                "startedAt": now,
                                "finishedAt": now,
                            }
                        },
                    }
                    for c in pod.spec.containers
                ],
            }
        }
        core.patch_namespaced_pod_status(pod.metadata.name, NAMESPACE, body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(finish, pods))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--hold", type=int, default=60, help="seconds of steady state measured")
    args = parser.parse_args()
    with components(controller_manager=True) as (plane, db_url, redis_url):
        kubectl(plane, "create", "namespace", NAMESPACE)
        api = load_client(str(plane.kubeconfig))
        api.configuration.connection_pool_maxsize = 16
        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sundial-bench-jobs-{os.getpid()}"
        workdir.mkdir(parents=True, exist_ok=True)
        op = OperatorProcess(
            kubeconfig=str(plane.kubeconfig),
            replica="bench-jobs",
            env={
                "SUNDIAL_DATABASE_URL": db_url,
                "SUNDIAL_REDIS_URL": redis_url,
                "SUNDIAL_NAMESPACES": NAMESPACE,
            },
            log_dir=workdir,
        ).start()
        assert op.proc is not None
        pid = op.proc.pid
        try:
            fire_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30 + args.jobs // 50)
            docs = [
                {
                    "apiVersion": "sundial.io/v1alpha1",
                    "kind": "CronConfig",
                    "metadata": {"name": f"job-{i:05d}", "namespace": NAMESPACE},
                    "spec": {
                        "runAt": fire_at.isoformat().replace("+00:00", "Z"),
                        "timeoutSeconds": 3600,
                        "job": {
                            "template": {
                                "spec": {
                                    "backoffLimit": 0,
                                    "template": {
                                        "spec": {
                                            "restartPolicy": "Never",
                                            "containers": [
                                                {"name": "main", "image": "busybox", "command": ["true"]}
                                            ],
                                        }
                                    },
                                }
                            }
                        },
                    },
                }
                for i in range(args.jobs)
            ]
            kubectl(plane, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs).encode())
            print(f"created {args.jobs} CronConfigs, all firing at {fire_at.isoformat()}", flush=True)
            _wait("the fire instant", lambda: datetime.now(UTC) >= fire_at, 600)
            took = _wait(
                f"{args.jobs} Running runs and Jobs",
                lambda: _statuses(db_url).get("Running", 0) >= args.jobs,
                300,
            )
            created = took + _wait(
                f"{args.jobs} Jobs",
                lambda: (
                    len(batch.list_namespaced_job(NAMESPACE, label_selector="sundial.io/cronconfig").items)
                    >= args.jobs
                ),
                300,
            )
            jobs = batch.list_namespaced_job(NAMESPACE, label_selector="sundial.io/cronconfig").items
            if len(jobs) != args.jobs:
                raise BenchFailure(f"{len(jobs)} Jobs exist for {args.jobs} runs")
            print(
                f"all {args.jobs} runs Running {took:.1f}s and all {len(jobs)} Jobs created {created:.1f}s "
                "after the fire instant",
                flush=True,
            )
            _wait(
                "every Job's Pod",
                lambda: len(core.list_namespaced_pod(NAMESPACE).items) >= args.jobs,
                300,
            )
            time.sleep(5)  # let the Job controller's status updates of the Pod creations pass
            req0, cpu0, t0 = metric_sum(op.port, REQUESTS), cpu_seconds(pid), time.monotonic()
            time.sleep(args.hold)
            hold = time.monotonic() - t0
            held_requests = metric_sum(op.port, REQUESTS) - req0
            held_cpu = cpu_seconds(pid) - cpu0
            pods = core.list_namespaced_pod(NAMESPACE).items
            req1, cpu1, t1 = metric_sum(op.port, REQUESTS), cpu_seconds(pid), time.monotonic()
            _play_kubelet(core, pods)
            patched = time.monotonic() - t1
            complete = _wait(
                f"{args.jobs} Complete Jobs (the Job controller)",
                lambda: sum(_complete(j) for j in batch.list_namespaced_job(NAMESPACE).items) >= args.jobs,
                600,
            )
            done = (
                _wait(
                    f"{args.jobs} Succeeded runs",
                    lambda: _statuses(db_url).get("Succeeded", 0) >= args.jobs,
                    600,
                )
                + complete
            )
            finish_requests = metric_sum(op.port, REQUESTS) - req1
            finish_cpu = cpu_seconds(pid) - cpu1
            peak = rss_mib(pid, "VmHWM:")
            statuses = _statuses(db_url)
        finally:
            print(f"operator log: {op.log_path}", flush=True)
            stop(op)
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(
        f"jobs: {args.jobs} running at once, held {hold:.0f}s; "
        f"all created {created:.1f}s after the fire instant"
    )
    print(
        f"while they run: {held_requests / hold:.2f} API requests/s by the operator "
        f"({held_requests:.0f} in {hold:.0f}s), operator CPU {100 * held_cpu / hold:.1f}% of a core"
    )
    print(
        f"completion: Pods patched in {patched:.1f}s; the Job controller completed every Job "
        f"{complete:.1f}s after the patches began; every run was recorded Succeeded "
        f"{done - complete:.1f}s "
        f"after that; {finish_requests:.0f} operator API requests, {finish_cpu:.1f} CPU s "
        f"({1000 * finish_cpu / args.jobs:.1f} ms per Job)"
    )
    print(f"operator peak RSS: {peak:.0f} MiB; runs by status: {statuses}")
    if statuses.get("Succeeded", 0) != args.jobs or len(statuses) != 1:
        raise BenchFailure(f"expected {args.jobs} Succeeded runs only, got {statuses}")


if __name__ == "__main__":
    run(main)
