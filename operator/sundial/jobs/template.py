"""``template`` jobs: one Kubernetes Job per attempt; the Job's outcome is the run's.

The work runs in the cluster's own Pods, so it outlives the operator: an attempt is followed
through the shared Job watch (never polled), resumed by whichever replica takes it over, and left
running when the operator shuts down. Finished Jobs are kept per CronConfig as the native CronJob
keeps them (``successfulJobsHistoryLimit``, ``failedJobsHistoryLimit``); the run history keeps all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Collection, Iterable
from typing import Any

from sundial.jobs.base import Finding, JobEnvironment, JobType, UnfinishedRuns
from sundial.jobs.context import JobContext, JobFailed, JobTimedOut
from sundial.jobs.jobwatch import Deleted, JobWatch, NotSynced
from sundial.jobs.kubejob import JobRun, JobView, build_job, job_name
from sundial.kube import ApiError, Conflict, Gone, Kube
from sundial.models.spec import JobKind, TemplateJob
from sundial.retrying import log_fault, retry_call

log = logging.getLogger("sundial.jobs")

PRUNE_SECONDS = 10.0
"""How often finished Jobs beyond the history limits are looked for."""
START_SYNC_SECONDS = 10.0
"""At start-up, how long the operator waits for the first list of Jobs."""
DELETED_REASON = "JobDeleted"
TIMED_OUT_REASONS = frozenset({"DeadlineExceeded"})


def _run_of(ctx: JobContext) -> JobRun:
    config = ctx.config
    return JobRun(
        run_id=ctx.run.id,
        config_name=ctx.run.name,
        config_uid=ctx.run.uid,
        namespace=ctx.run.namespace,
        slot=ctx.run.scheduled_for,
        attempt=ctx.run.attempt,
        trigger=ctx.run.trigger,
        context=ctx.context,
        timeout_seconds=config.timeout_seconds if config is not None else 3600,
    )


class TemplateJobType(JobType[TemplateJob]):
    """Creates, follows, deletes and prunes the Jobs of every ``template`` CronConfig."""

    kind = JobKind.TEMPLATE
    model = TemplateJob
    resumable = True

    def __init__(self) -> None:
        self._kube: Kube | None = None
        self._watch: JobWatch | None = None
        self._unfinished: UnfinishedRuns | None = None
        self._limits: dict[str, tuple[int, int]] = {}
        """Per CronConfig uid this replica ran: (successful, failed) Jobs to keep."""
        self._stopping: set[tuple[str, str]] = set()
        self._pruner: asyncio.Task[None] | None = None

    async def open(self, env: JobEnvironment) -> None:
        if not isinstance(env.kube, Kube):
            return  # no API server (the engine's own tests): template CronConfigs cannot run
        self._kube = env.kube
        self._unfinished = env.unfinished_runs
        self._watch = JobWatch(env.kube, env.settings.namespaces)
        self._watch.start()
        # Forbid asks the cache whether a Job still runs: fill it before the first slot fires
        try:
            async with asyncio.timeout(START_SYNC_SECONDS):
                await self._watch.synced()
        except (TimeoutError, NotSynced) as err:
            log.warning("Jobs not listed yet (%s); template CronConfigs wait for it", err or "timed out")
        self._pruner = asyncio.create_task(self._prune_loop(), name="sundial-job-pruner")

    async def close(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            await asyncio.gather(self._pruner, return_exceptions=True)
        if self._watch is not None:
            await self._watch.stop()

    @property
    def watch(self) -> JobWatch:
        if self._watch is None:
            raise RuntimeError("the template job type was not opened with a Kubernetes client")
        return self._watch

    # ------------------------------------------------------------------ attempts
    async def _synced(self) -> None:
        try:
            await self.watch.synced()
        except NotSynced as err:
            raise JobFailed(
                f"{err} (the operator's RBAC must allow Jobs: get, list, watch, create, delete)"
            ) from None

    async def run(self, spec: TemplateJob, ctx: JobContext) -> dict[str, Any]:
        await self._synced()
        manifest = build_job(spec.model_dump(mode="json", by_alias=True, exclude_none=True), _run_of(ctx))
        key = (ctx.run.namespace, manifest["metadata"]["name"])
        self._remember_limits(ctx)
        try:
            await self._call(
                lambda: self._api("POST", f"/apis/batch/v1/namespaces/{key[0]}/jobs", manifest), key
            )
            ctx.capture.info(f"created Job {key[0]}/{key[1]}")
        except Conflict:
            existing = await self._call(lambda: self._api("GET", self._path(key)), key)
            owner = (existing.get("metadata", {}).get("labels") or {}).get("sundial.io/run-id")
            if owner != ctx.run.id:
                raise JobFailed(
                    f"a Job named {key[1]} already exists in {key[0]} and is not this run's "
                    f"(it belongs to run {owner or 'unknown'}); not starting a second one",
                ) from None
            ctx.capture.info(f"Job {key[0]}/{key[1]} was already created for this attempt; following it")
        return await self._follow(key)

    async def resume(self, spec: TemplateJob, ctx: JobContext) -> dict[str, Any]:
        """Follow the Job a dead replica created; never create a second one."""
        await self._synced()
        self._remember_limits(ctx)
        name = job_name(ctx.run.name, ctx.run.uid, ctx.run.scheduled_for, ctx.run.attempt)
        key = (ctx.run.namespace, name)
        if key not in self.watch.jobs:
            raise JobFailed(
                f"Job {key[0]}/{name} no longer exists: it was deleted (or never created) before "
                "this replica took the attempt over",
                reason=DELETED_REASON,
            )
        ctx.capture.info(f"following Job {key[0]}/{name} after its first owner stopped")
        return await self._follow(key)

    async def _follow(self, key: tuple[str, str]) -> dict[str, Any]:
        try:
            job = await self.watch.wait(key)
        except Deleted as err:
            raise JobFailed(
                f"{err} (deleted by someone other than sundial); its outcome is unknown",
                reason=DELETED_REASON,
            ) from None
        return _outcome(job)

    async def cancel(self, spec: TemplateJob, ctx: JobContext, reason: str) -> None:
        """Delete the attempt's Job (its Pods follow in the background): ``Replace`` and timeouts."""
        name = job_name(ctx.run.name, ctx.run.uid, ctx.run.scheduled_for, ctx.run.attempt)
        key = (ctx.run.namespace, name)
        try:
            await self._delete(key)
            ctx.capture.info(f"deleted Job {key[0]}/{name} ({reason})")
        except Exception as err:
            log_fault(f"deleting Job {key[0]}/{name} ({reason})", err)

    def busy(self, spec: TemplateJob, uid: str) -> bool:
        """A Job of this CronConfig still runs, whoever follows it (its owner may have died)."""
        if self._watch is None:
            return False
        return any(job.outcome is None and not job.deleting for job in self._watch.of_owner(uid))

    def check(self, spec: TemplateJob, *, known_handlers: Collection[str] | None) -> Iterable[Finding]:
        pod = (
            (spec.spec.get("template") or {}).get("spec")
            if isinstance(spec.spec.get("template"), dict)
            else None
        )
        if not isinstance(pod, dict) or not pod.get("containers"):
            yield Finding(
                "spec.job.template.spec.template.spec.containers", "at least one container is required"
            )
        if isinstance(pod, dict) and pod.get("restartPolicy") not in ("Never", "OnFailure"):
            yield Finding(
                "spec.job.template.spec.template.spec.restartPolicy",
                "must be Never or OnFailure (a Job's Pods must be able to finish)",
            )

    # ------------------------------------------------------------------ history limits
    def _remember_limits(self, ctx: JobContext) -> None:
        config = ctx.config
        if config is not None:
            limits = (config.successful_jobs_history_limit, config.failed_jobs_history_limit)
            self._limits[ctx.run.uid] = limits

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_SECONDS)
            try:
                await self.prune()
            except Exception as err:
                log_fault("deleting finished Jobs beyond the history limits", err)

    async def prune(self) -> int:
        """Delete finished Jobs beyond the limits, oldest first, once their outcome is recorded."""
        excess: list[JobView] = []
        for uid, (keep_ok, keep_failed) in list(self._limits.items()):
            jobs = self.watch.of_owner(uid)
            if not jobs:
                continue
            for outcome, keep in (("Complete", keep_ok), ("Failed", keep_failed)):
                done = sorted(
                    (j for j in jobs if j.outcome == outcome and not j.deleting),
                    key=lambda j: j.completion_time or "",
                    reverse=True,
                )
                excess.extend(done[keep:])
        if not excess:
            return 0
        ids = {uuid.UUID(j.run_id): j for j in excess if _is_uuid(j.run_id)}
        unfinished = await self._unfinished(list(ids)) if self._unfinished is not None else set(ids)
        deleted = 0
        for run_id, job in ids.items():
            if run_id in unfinished:
                continue  # its outcome is not recorded yet: a takeover may still need the Job
            try:
                await self._delete(job.key)
                deleted += 1
            except Exception as err:
                log_fault(f"deleting finished Job {job.namespace}/{job.name}", err)
        return deleted

    # ------------------------------------------------------------------ API calls
    def _path(self, key: tuple[str, str]) -> str:
        return f"/apis/batch/v1/namespaces/{key[0]}/jobs/{key[1]}"

    async def _api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        if self._kube is None:
            raise RuntimeError("the template job type was not opened with a Kubernetes client")
        return await self._kube.api(method, path, body=body)

    async def _delete(self, key: tuple[str, str]) -> None:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        with contextlib.suppress(Gone):
            await self._call(lambda: self._api("DELETE", self._path(key), body), key)

    async def _call(self, fn: Any, key: tuple[str, str]) -> dict[str, Any]:
        """One API call, retried while the API server is unavailable; refusals fail the attempt."""
        try:
            result: dict[str, Any] = await retry_call(fn, what=f"Job {key[0]}/{key[1]}", attempts=5)
        except (Conflict, Gone):
            raise
        except ApiError as err:
            hint = (
                " (the operator's RBAC must allow Jobs: create, get, list, watch, delete)"
                if err.status == 403
                else ""
            )
            raise JobFailed(f"Job {key[0]}/{key[1]}: {err}{hint}") from None
        return result


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _outcome(job: JobView) -> dict[str, Any]:
    """The run's result, or the failure the Job's ``Failed`` condition names."""
    result = job.result()
    if job.outcome == "Complete":
        return result
    detail = f"Job {job.namespace}/{job.name} failed: {job.reason or 'Failed'}"
    if job.message:
        detail += f": {job.message}"
    if job.reason in TIMED_OUT_REASONS:
        raise JobTimedOut(detail, result=result, reason=job.reason)
    raise JobFailed(detail, result=result, reason=job.reason or None)
