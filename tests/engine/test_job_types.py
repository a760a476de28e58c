"""The job-type seam: the engine drives any job type only through run, cancel and resume.

A probe job type stands in for one whose work lives outside the operator (as a Kubernetes Job
will): it records each hook the engine calls, so the tests show that ``Replace`` and timeouts go
through ``cancel`` and that a takeover follows a resumable attempt instead of failing it.
"""

from __future__ import annotations

from typing import Any

from sundial.jobs.base import JobType
from sundial.jobs.context import JobContext
from sundial.jobs.kinds import JobTypes
from sundial.models.spec import HttpJob, JobKind
from tests.engine.harness import Cluster, uid_preferring


class Probe(JobType[HttpJob]):
    """An ``http`` job type that "runs elsewhere" for ``context.seconds`` of engine time."""

    kind = JobKind.HTTP
    model = HttpJob
    resumable = True

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.calls: list[tuple[str, int, str]] = []

    async def run(self, spec: HttpJob, ctx: JobContext) -> dict[str, Any]:
        self.calls.append(("run", ctx.run.attempt, ctx.run.scheduled_for.isoformat()))
        await self.cluster.clock.sleep(float(ctx.context.get("seconds", 0)))
        return {"ran": True}

    async def cancel(self, spec: HttpJob, ctx: JobContext, reason: str) -> None:
        self.calls.append(("cancel:" + reason, ctx.run.attempt, ctx.run.scheduled_for.isoformat()))

    async def resume(self, spec: HttpJob, ctx: JobContext) -> dict[str, Any]:
        self.calls.append(("resume", ctx.run.attempt, ctx.run.scheduled_for.isoformat()))
        return {"resumed": True}


def probe_spec(schedule: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "schedule": schedule,
        "context": {"seconds": seconds},
        "job": {"http": {"url": "http://probe/"}},
        **extra,
    }


async def test_replace_and_timeout_cancel_through_the_job_type(cluster: Cluster) -> None:
    probe = Probe(cluster)
    await cluster.replica("a", job_types=JobTypes({JobKind.HTTP: probe}))
    await cluster.apply("replaced", probe_spec("*/5 * * * * *", 30, concurrencyPolicy="Replace"))
    await cluster.apply("slow", probe_spec("*/10 * * * * *", 30, timeoutSeconds=2))
    await cluster.clock.advance(13)
    kinds = [call[0] for call in probe.calls]
    assert "cancel:Replaced" in kinds and "cancel:Timeout" in kinds
    assert {(r.status, r.reason) for r in cluster.runs("slow") if r.status != "Pending"} == {
        ("TimedOut", "Timeout")
    }
    assert ("Cancelled", "Replaced") in {(r.status, r.reason) for r in cluster.runs("replaced")}


async def test_takeover_resumes_a_resumable_attempt_instead_of_failing_it(cluster: Cluster) -> None:
    probe_a, probe_b = Probe(cluster), Probe(cluster)
    await cluster.replica("a", job_types=JobTypes({JobKind.HTTP: probe_a}))
    await cluster.replica("b", job_types=JobTypes({JobKind.HTTP: probe_b}))
    await cluster.clock.advance(2)  # both heartbeats seen
    uid = uid_preferring("a", ["a", "b"])
    await cluster.apply("long", probe_spec("*/30 * * * * *", 20), uid=uid)
    await cluster.clock.advance_to(cluster.clock.now().replace(second=31))
    assert [c[0] for c in probe_a.calls] == ["run"]
    await cluster.kill("a")
    await cluster.clock.advance(15)
    runs = [r for r in cluster.runs("long") if r.status != "Pending"]
    assert [(r.status, r.replica) for r in runs][:1] == [("Succeeded", "b")]
    assert runs[0].result == {"resumed": True}
    assert [c[0] for c in probe_b.calls][:1] == ["resume"], "followed, not run a second time"
