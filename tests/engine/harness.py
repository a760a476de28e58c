"""Engine tests in milliseconds: a manual clock, SQLite and in-process leases, a recording API server.

Only the Kubernetes API is replaced (by :class:`RecordingKube`, which keeps status patches and
Events in memory); the run history is a real SQLite database migrated by the real migrations,
and the leases are the real in-process backend. Every wait of the engine goes through
:class:`ManualClock`, so ``await clock.advance(3600)`` runs an hour of engine time at once, firing
every timer in order and letting the loop settle after each. Each replica sees that clock through
a :class:`ReplicaClock` of its own, so :meth:`Cluster.kill` silences the killed replica's timers
as a real SIGKILL would.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import uuid
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sundial.engine.history import History
from sundial.engine.runtime import Runtime
from sundial.engine.sharding import Shards
from sundial.jobs.kinds import JobTypes
from sundial.leases import LocalLeases
from sundial.settings import Settings
from sundial.store import migrate
from sundial.store.records import RunRecord
from sundial.store.store import RunStore

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SETTLE_HOPS = 60


class _Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Waits:
    """``sleep`` and ``wait`` built on ``call_later``, so a clock with its own timers gets both."""

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> _Timer:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        self.call_later(seconds, wake)
        await future

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        waiter = asyncio.ensure_future(event.wait())
        timer = self.call_later(seconds, lambda: waiter.done() or waiter.cancel())
        try:
            await waiter
            return True
        except asyncio.CancelledError:
            if waiter.cancelled() and not event.is_set():
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                return False
            raise
        finally:
            timer.cancel()


class ManualClock(_Waits):
    """Time moves only in :meth:`advance`; sleepers and timers wake in order of their due time."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._mono = 1000.0
        self._queue: list[tuple[float, int, _Timer, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> _Timer:
        timer = _Timer()
        heapq.heappush(self._queue, (self._mono + max(delay, 0.0), next(self._seq), timer, callback, args))
        return timer

    async def settle(self) -> None:
        """Let every task run until it waits on the clock (the engine does no real I/O here)."""
        for _ in range(SETTLE_HOPS):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running each timer at its own instant."""
        target = self._mono + seconds
        await self.settle()
        while self._queue and self._queue[0][0] <= target:
            when, _, timer, callback, args = heapq.heappop(self._queue)
            if timer.cancelled:
                continue
            self._step_to(when)
            callback(*args)
            await self.settle()
        self._step_to(target)
        await self.settle()

    async def advance_to(self, instant: datetime) -> None:
        """Move time forward to the wall-clock ``instant`` (no-op if it has passed)."""
        await self.advance(max(0.0, (instant - self._now).total_seconds()))

    def _step_to(self, mono: float) -> None:
        if mono > self._mono:
            self._now += timedelta(seconds=mono - self._mono)
            self._mono = mono


class ReplicaClock(_Waits):
    """One replica's view of the cluster's :class:`ManualClock`: the same time, its own timers.

    A killed process's timers die with it; :meth:`stop_all` cancels every timer this replica set
    and refuses new ones, so a killed replica cannot fire a slot it claimed or wake a sleeper.
    """

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock
        self._timers: weakref.WeakSet[_Timer] = weakref.WeakSet()
        self.dead = False

    def now(self) -> datetime:
        return self._clock.now()

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> _Timer:
        if self.dead:
            timer = _Timer()
            timer.cancel()
            return timer
        timer = self._clock.call_later(delay, callback, *args)
        self._timers.add(timer)
        return timer

    def stop_all(self) -> None:
        self.dead = True
        for timer in list(self._timers):
            timer.cancel()


class InlineExecutor(Executor):
    """Runs history calls on the loop's thread: SQLite is fast, and the order stays deterministic."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:
            future.set_exception(err)
        return future


@dataclass
class RecordingKube:
    """The API server as the engine sees it: status patches merged per object, Events kept."""

    secrets: dict[tuple[str, str, str], str] = field(default_factory=dict)
    status: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    patches: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    rv: Iterator[int] = field(default_factory=itertools.count)

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], *, resource_version: str | None
    ) -> dict[str, Any]:
        self.patches.append((namespace, name, status))
        current = self.status.setdefault((namespace, name), {})
        for key, value in status.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        return {"metadata": {"resourceVersion": str(next(self.rv))}, "status": dict(current)}

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        return {
            "metadata": {"resourceVersion": str(next(self.rv))},
            "status": self.status.get((namespace, name), {}),
        }

    async def read_secret(self, namespace: str, name: str, key: str) -> str:
        return self.secrets[(namespace, name, key)]

    async def event(self, obj: dict[str, Any], *, reason: str, message: str, type_: str = "Normal") -> None:
        self.events.append(
            {"name": obj["metadata"]["name"], "reason": reason, "message": message, "type": type_}
        )

    async def close(self) -> None:
        pass


class Cluster:
    """Replicas sharing one history (SQLite file) and one lease backend, on one manual clock."""

    def __init__(self, tmp: Path, **settings: Any) -> None:
        self.clock = ManualClock()
        self.url = f"sqlite:///{tmp / 'runs.db'}"
        migrate.upgrade(self.url)
        self.store = RunStore(self.url)
        self.leases = LocalLeases(monotonic=self.clock.monotonic)
        self.kube = RecordingKube()
        self.settings = {"lease_ttl_seconds": 3.0, "shutdown_grace_seconds": 2.0, **settings}
        self.replicas: dict[str, Runtime] = {}
        self.clocks: dict[str, ReplicaClock] = {}
        self.objects: dict[str, dict[str, Any]] = {}

    async def replica(
        self, name: str = "a", *, job_types: JobTypes | None = None, **settings: Any
    ) -> Runtime:
        """Start a replica; ``job_types`` replaces the built-in job types (see test_job_types.py)."""
        config = Settings(replica=name, database_url=self.url, **{**self.settings, **settings})
        clock = ReplicaClock(self.clock)
        history = History(RunStore(self.url), clock=clock, executor=InlineExecutor())
        runtime = Runtime(
            config,
            kube=self.kube,  # type: ignore[arg-type]
            history=history,
            leases=self.leases,
            clock=clock,
            job_types=job_types,
        )
        await runtime.start()
        self.replicas[name] = runtime
        self.clocks[name] = clock
        for body in self.objects.values():
            await runtime.observe(body)
        await self.clock.settle()
        return runtime

    async def apply(
        self, name: str, spec: dict[str, Any], *, namespace: str = "ns", **meta: Any
    ) -> dict[str, Any]:
        """Create or update a CronConfig (generation + 1 on every apply), seen by every replica."""
        old = self.objects.get(name)
        uid = old["metadata"]["uid"] if old else str(uuid.uuid4())
        generation = old["metadata"]["generation"] + 1 if old else 1
        created = old["metadata"]["creationTimestamp"] if old else self.clock.now().isoformat()
        body = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "generation": generation,
                "creationTimestamp": created,
                "resourceVersion": str(generation),
                **meta,
            },
            "spec": spec,
        }
        self.objects[name] = body
        for runtime in self.replicas.values():
            await runtime.observe(body)
        await self.clock.settle()
        return body

    async def delete(self, name: str) -> None:
        body = self.objects.pop(name)
        for runtime in self.replicas.values():
            await runtime.observe(body, deleted=True)
        await self.clock.settle()

    async def kill(self, name: str) -> None:
        """SIGKILL: the replica's tasks end mid-flight; nothing is flushed, released or given back.

        Its timers die too (a claimed slot's fire timer, a retry's backoff, a timeout), and tasks
        spawned while the others unwind are cancelled as well: nothing of it runs afterwards.
        """
        runtime = self.replicas.pop(name)
        self.clocks.pop(name).stop_all()
        core = runtime.core
        tasks = [*core.tasks, *runtime._services.values()]
        history_task = core.history._task
        if history_task is not None:
            tasks.append(history_task)
        for _ in range(10):
            live = [task for task in tasks if not task.done()]
            if not live:
                break
            for task in live:
                task.cancel()
            await asyncio.gather(*live, return_exceptions=True)
            tasks = list(core.tasks)
        await runtime.job_types.close()  # not behaviour: only so that the test leaks no HTTP session
        await self.clock.settle()

    async def flush_leases(self) -> None:
        """Redis restarted empty (or FLUSHALL): every lease, heartbeat and membership is gone at once."""
        self.leases._held.clear()
        self.leases._members.clear()
        await self.clock.settle()

    async def stop(self, name: str) -> None:
        """SIGTERM: a graceful stop; it waits on the clock, so time moves while it runs."""
        runtime = self.replicas.pop(name)
        self.clocks.pop(name, None)
        stopping = asyncio.ensure_future(runtime.stop())
        while not stopping.done():
            await self.clock.advance(0.5)
        await stopping

    async def close(self) -> None:
        for name in list(self.replicas):
            await self.stop(name)
        self.store.close()

    def runs(self, name: str) -> list[RunRecord]:
        """Every recorded run of a CronConfig, oldest slot first."""
        namespace = self.objects[name]["metadata"]["namespace"] if name in self.objects else "ns"
        return sorted(
            self.store.runs(namespace, name, limit=100_000), key=lambda r: (r.scheduled_for, r.attempt)
        )

    def status(self, name: str, namespace: str = "ns") -> dict[str, Any]:
        return self.kube.status.get((namespace, name), {})


def work_spec(
    schedule: str = "* * * * * *", *, seconds: float = 0, fail_attempts: int = 0, **extra: Any
) -> dict[str, Any]:
    """A CronConfig spec running the ``test.work`` handler: ``seconds`` long, failing the first attempts.

    ``extra`` is merged in as spec fields (camelCase, as in a manifest).
    """
    context: dict[str, Any] = {"seconds": seconds, "failAttempts": fail_attempts}
    return {
        "schedule": schedule,
        "job": {"handler": {"name": "test.work"}},
        **extra,
        "context": {**context, **extra.get("context", {})},
    }


def uid_preferring(replica: str, members: list[str]) -> str:
    """A stable CronConfig uid whose slots ``replica`` claims first when ``members`` are alive.

    Rendezvous hashing decides which replica claims a CronConfig first; a test that needs one
    particular replica to own a CronConfig picks its uid with this (the same public hash).
    """
    return uids_preferring(replica, members, 1)[0]


def uids_preferring(replica: str, members: list[str], n: int) -> list[str]:
    """``n`` distinct stable uids :func:`uid_preferring` would give (the first is its)."""
    shards = Shards(replica)
    shards.update(members)
    found: list[str] = []
    for i in itertools.count():
        uid = str(uuid.UUID(int=i + 1))
        if shards.owner(uid) == replica:
            found.append(uid)
            if len(found) == n:
                return found
    raise AssertionError("unreachable")
