"""One watch on every Job sundial created: 1,000 running Jobs cost one connection, not 1,000 polls.

List, then watch from the list's resourceVersion (with bookmarks); when the server says the
version is too old, list again, and a Job that vanished meanwhile counts as deleted. Attempts wait
on the cache: a future per Job, resolved when the Job ends or is deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable

from sundial.jobs.kubejob import LABEL_CONFIG, JobView, view
from sundial.kube import Expired, Kube
from sundial.retrying import log_fault

log = logging.getLogger("sundial.jobs")

WATCH_SECONDS = 300
SYNC_SECONDS = 30.0
PAGE = 500
Key = tuple[str, str]


class NotSynced(Exception):
    """The Jobs could not be listed yet."""


class Deleted(Exception):
    """The Job was deleted before it ended (by someone other than this attempt's cancel)."""


class JobWatch:
    """The cache of sundial's Jobs, in every watched namespace (or the whole cluster)."""

    def __init__(self, kube: Kube, namespaces: Iterable[str]) -> None:
        self._kube = kube
        self._paths = [f"/apis/batch/v1/namespaces/{ns}/jobs" for ns in namespaces] or ["/apis/batch/v1/jobs"]
        self.jobs: dict[Key, JobView] = {}
        self._by_owner: dict[str, set[Key]] = defaultdict(set)
        self._waiters: dict[Key, list[asyncio.Future[JobView]]] = defaultdict(list)
        self._synced = [asyncio.Event() for _ in self._paths]
        self._tasks: list[asyncio.Task[None]] = []
        self.last_error: str | None = None

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow(i, path), name=f"sundial-job-watch-{i}")
            for i, path in enumerate(self._paths)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for waiters in self._waiters.values():
            for fut in waiters:
                fut.cancel()

    async def synced(self) -> None:
        """Until every namespace's first list arrived: before it, absence means nothing.

        :class:`NotSynced` after :data:`SYNC_SECONDS` (the API server down, or RBAC without Jobs), with the
        last error, so an attempt fails with the cause instead of waiting for its timeout.
        """
        try:
            async with asyncio.timeout(SYNC_SECONDS):
                for event in self._synced:
                    await event.wait()
        except TimeoutError:
            raise NotSynced(
                f"cannot list Jobs: {self.last_error or 'no answer from the API server'}"
            ) from None

    def of_owner(self, uid: str) -> list[JobView]:
        return [self.jobs[key] for key in self._by_owner.get(uid, ()) if key in self.jobs]

    async def wait(self, key: Key) -> JobView:
        """The Job once it ended; :class:`Deleted` if it is deleted first."""
        job = self.jobs.get(key)
        if job is not None and job.outcome is not None:
            return job
        fut: asyncio.Future[JobView] = asyncio.get_running_loop().create_future()
        self._waiters[key].append(fut)
        try:
            return await fut
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                if fut in waiters:
                    waiters.remove(fut)
                if not waiters:
                    del self._waiters[key]

    # ------------------------------------------------------------------ the watch
    async def _follow(self, index: int, path: str) -> None:
        delay = 1.0
        while True:
            try:
                version = await self._list(index, path)
                delay = 1.0
                while True:
                    version = await self._watch(path, version)
            except Expired:
                continue  # list again from now
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.last_error = f"{type(err).__name__}: {err}"
                log_fault(f"watching Jobs ({path})", err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _list(self, index: int, path: str) -> str:
        seen: set[Key] = set()
        params = {"labelSelector": LABEL_CONFIG, "limit": str(PAGE)}
        while True:
            page = await self._kube.api("GET", path, params=params)
            for item in page.get("items") or ():
                job = view(item)
                seen.add(job.key)
                self._put(job)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                self.last_error = None
                break
            params = {**params, "continue": str(meta["continue"])}
        in_scope = self._paths[index] == "/apis/batch/v1/jobs"
        for key in [k for k in self.jobs if k not in seen and (in_scope or path.split("/")[5] == k[0])]:
            self._gone(key)
        self._synced[index].set()
        return str(meta.get("resourceVersion") or "")

    async def _watch(self, path: str, version: str) -> str:
        params = {
            "labelSelector": LABEL_CONFIG,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async for event in self._kube.watch(path, params):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Expired(path)
                raise RuntimeError(f"watch error: {obj.get('message')}")
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            job = view(obj)
            if kind == "DELETED":
                self._gone(job.key)
            else:
                self._put(job)
        return version

    def _put(self, job: JobView) -> None:
        self.jobs[job.key] = job
        if job.owner_uid:
            self._by_owner[job.owner_uid].add(job.key)
        if job.outcome is not None:
            for fut in self._waiters.get(job.key, ()):
                if not fut.done():
                    fut.set_result(job)

    def _gone(self, key: Key) -> None:
        job = self.jobs.pop(key, None)
        if job is not None and job.owner_uid:
            owned = self._by_owner.get(job.owner_uid)
            if owned is not None:
                owned.discard(key)
                if not owned:
                    del self._by_owner[job.owner_uid]
        for fut in self._waiters.get(key, ()):
            if not fut.done():
                if job is not None and job.outcome is not None:
                    fut.set_result(job)
                else:
                    fut.set_exception(Deleted(f"Job {key[0]}/{key[1]} was deleted before it finished"))
