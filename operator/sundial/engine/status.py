"""Coalesced, rate-limited status patches that never regress to an older run.

Runs update status far more often than anyone reads it. Changes are merged per CronConfig and
written at most once per ``min_interval`` per object and ``qps`` overall; under pressure status
lags behind while the run history stays complete. Patches carry the resourceVersion last seen, so
a concurrent writer (another replica) causes a 409, a re-read, and a merge that keeps the newer run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from sundial.engine.clock import Clock, SystemClock
from sundial.kube import Conflict, Gone, Kube
from sundial.models.base import format_timestamp, parse_timestamp
from sundial.retrying import log_fault

log = logging.getLogger(__name__)

PATCHES = Counter("sundial_status_patches_total", "Status patches sent to the API server", ["result"])

MAX_ACTIVE = 100
"""``status.active`` holds at most this many entries (the CRD's limit)."""
MONOTONIC_TIMES = ("lastScheduleTime", "lastSuccessfulTime", "lastFailureTime")


_NEVER = datetime.min.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=8192)
def _parse(value: str) -> datetime:
    try:
        return parse_timestamp(value) or _NEVER
    except ValueError:
        return _NEVER


def _instant(value: Any) -> datetime:
    """Status times compared as instants: RFC 3339 strings of different precision sort wrongly.

    The same few strings (each CronConfig's last times) come back again and again: parsed once.
    """
    if isinstance(value, str):
        return _parse(value)
    return parse_timestamp(value) or _NEVER if value else _NEVER


def _run_key(run: dict[str, Any] | None) -> tuple[datetime, int, datetime]:
    if not run:
        return (_NEVER, 0, _NEVER)
    return (_instant(run.get("scheduledTime")), int(run.get("attempt") or 0), _instant(run.get("startTime")))


def _slim(body: dict[str, Any]) -> dict[str, Any]:
    """Only what merging needs: a whole object (managedFields, spec, annotations) per CronConfig
    would cost kilobytes each at 10,000 CronConfigs."""
    meta = body.get("metadata") or {}
    return {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": body.get("status") or {}}


@dataclass
class _Entry:
    namespace: str
    name: str
    pending: dict[str, Any] = field(default_factory=dict)
    last_patch: float = 0.0
    body: dict[str, Any] | None = None
    finished: set[str] = field(default_factory=set)
    """Runs reported finished since the last patch: their ``active`` entries go, whoever wrote them."""
    derived: Callable[[], dict[str, Any]] | None = None
    """Computes the fields that reflect the current state (conditions, next run) at send time."""


class StatusPatcher:
    def __init__(
        self,
        kube: Kube,
        *,
        qps: float = 50.0,
        min_interval: float = 1.0,
        clock: Clock | None = None,
        replica: str | None = None,
    ) -> None:
        self._kube = kube
        self._replica = replica
        """Whose entries of ``active`` this patcher writes; other replicas' entries are kept."""
        self._clock: Clock = clock or SystemClock()
        self._budget = max(qps, 0.1)
        self._qps = self._budget
        self._min_interval = min_interval
        self._entries: dict[str, _Entry] = {}
        self._dirty: set[str] = set()
        self._wakeup = asyncio.Event()
        self._failing = False
        """Patches are failing (API server unreachable): logged once until one succeeds."""
        self._tokens = self._qps
        self._refill = self._clock.monotonic()

    def share(self, replicas: int) -> None:
        """Split the budget between the live replicas: ``qps`` is what the API server sees from all.

        Each replica patches the CronConfigs whose slots it ran, so the load splits about evenly;
        a replica that dies leaves its share to the others at the next membership round.
        """
        qps = max(self._budget / max(replicas, 1), 0.1)
        if qps != self._qps:
            self._qps = qps
            self._tokens = min(self._tokens, qps)

    def observe(self, uid: str, body: dict[str, Any]) -> None:
        """Remember the newest object seen, for resourceVersion and no-regression checks."""
        meta = body.get("metadata", {})
        entry = self._entries.setdefault(uid, _Entry(meta.get("namespace", ""), meta.get("name", "")))
        entry.body = _slim(body)

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)
        self._dirty.discard(uid)

    def update(
        self,
        uid: str,
        namespace: str,
        name: str,
        changes: dict[str, Any],
        *,
        derived: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """Merge ``changes`` (status fields, camelCase; None deletes) into the next patch.

        ``derived`` computes fields of the current state when the patch is sent, so a thousand runs
        a second cost one computation per patch (at most one a second), not one per run.
        """
        entry = self._entries.setdefault(uid, _Entry(namespace, name))
        if derived is not None:
            entry.derived = derived
        last_run = changes.get("lastRun")
        if isinstance(last_run, dict) and last_run.get("id"):
            entry.finished.add(str(last_run["id"]))
        for key, value in changes.items():
            if key in MONOTONIC_TIMES and value is not None:
                current = entry.pending.get(key)
                if current is not None and _instant(current) >= _instant(value):
                    continue
            if (
                key == "lastRun"
                and value is not None
                and _run_key(entry.pending.get("lastRun")) > _run_key(value)
            ):
                continue
            entry.pending[key] = value
        self._dirty.add(uid)
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.drain()
            except Exception as err:  # a bug must not end status patching for the process's life
                log.error("status patching failed (retrying): %s", err, exc_info=err)
                await self._clock.sleep(1.0)
                self._wakeup.set()

    async def drain(self, *, force: bool = False) -> None:
        """Send every due patch; ``force`` ignores the per-object interval (shutdown)."""
        while self._dirty:
            now = self._clock.monotonic()
            for gone in [u for u in self._dirty if u not in self._entries]:
                self._dirty.discard(gone)
            due = [u for u in self._dirty if force or now - self._entries[u].last_patch >= self._min_interval]
            if not due:
                if self._dirty:
                    wait = min(self._entries[u].last_patch + self._min_interval for u in self._dirty) - now
                    await self._clock.sleep(max(wait, 0.01))
                continue
            in_flight = asyncio.Semaphore(16)
            sends: list[asyncio.Task[None]] = []
            for uid in due:
                if not self._changes(uid):
                    self._dirty.discard(uid)
                    continue
                if not force:
                    await self._take_token()
                await in_flight.acquire()
                # taken only now: until here the changes stay pending (and dirty) for a forced drain
                prepared = self._take(uid) if uid in self._dirty else None
                if prepared is None:
                    in_flight.release()
                    continue
                sends.append(asyncio.create_task(self._send(*prepared, done=in_flight)))
            await asyncio.gather(*sends)

    async def _take_token(self) -> None:
        cap = max(self._qps, 1.0)  # a share under one a second still gets its one token
        while True:
            now = self._clock.monotonic()
            self._tokens = min(cap, self._tokens + (now - self._refill) * self._qps)
            self._refill = now
            if self._tokens >= 1 - 1e-9:  # float rounding must not leave a token forever just short
                self._tokens = max(self._tokens - 1, 0.0)
                return
            await self._clock.sleep((1 - self._tokens) / self._qps)

    def _merge_active(
        self, current: list[dict[str, Any]], patch: dict[str, Any], finished: set[str]
    ) -> list[dict[str, Any]]:
        """This replica's attempts replace its own entries; other replicas' entries stay.

        Each replica only knows its own attempts, so a patch that replaced the whole list would
        hide an attempt running elsewhere. An entry goes when its owner (or whoever took over its
        run) reports the run finished.
        """
        others = [
            a
            for a in current
            if isinstance(a, dict) and a.get("replica") != self._replica and a.get("id") not in finished
        ]
        return [*others, *(patch["active"] or [])][-MAX_ACTIVE:]

    def _merge(self, entry: _Entry, changes: dict[str, Any], finished: set[str]) -> dict[str, Any]:
        """Drop what would move the stored status backwards; stamp condition transition times."""
        current = (entry.body or {}).get("status") or {}
        patch = dict(changes)
        for key in MONOTONIC_TIMES:
            if (
                patch.get(key) is not None
                and current.get(key)
                and _instant(current[key]) > _instant(patch[key])
            ):
                del patch[key]
        if patch.get("lastRun") is not None and _run_key(current.get("lastRun")) > _run_key(patch["lastRun"]):
            del patch["lastRun"]
        if "active" in patch and self._replica is not None:
            patch["active"] = self._merge_active(current.get("active") or [], patch, finished)
        if "conditions" in patch:
            old = {c.get("type"): c for c in current.get("conditions") or []}
            stamped = []
            for cond in patch["conditions"]:
                prior = old.get(cond["type"])
                same = prior is not None and prior.get("status") == cond["status"]
                when = (
                    prior.get("lastTransitionTime") if same and prior else format_timestamp(self._clock.now())
                )
                stamped.append({**cond, "lastTransitionTime": when})
            patch["conditions"] = stamped
        return {k: v for k, v in patch.items() if current.get(k) != v}  # deleting what is absent: no change

    def _changes(self, uid: str) -> bool:
        """Whether the pending changes say anything the stored status does not (nothing is taken).

        A restarted operator recomputes every CronConfig's status: at 10,000 the unchanged ones
        would spend the whole budget on no-ops (and delay the patches that matter) for minutes.
        """
        entry = self._entries.get(uid)
        if entry is None:
            return False
        changes = dict(entry.pending)
        if entry.derived is not None:
            changes.update(entry.derived())
        if self._merge(entry, changes, entry.finished):
            return True
        entry.pending, entry.finished = {}, set()
        return False

    def _take(self, uid: str) -> tuple[str, _Entry, dict[str, Any], set[str]] | None:
        entry = self._entries.get(uid)
        if entry is None:
            return None
        self._dirty.discard(uid)
        changes, entry.pending = entry.pending, {}
        finished, entry.finished = entry.finished, set()
        if entry.derived is not None:
            changes.update(entry.derived())
        return uid, entry, changes, finished

    async def _send(
        self, uid: str, entry: _Entry, changes: dict[str, Any], finished: set[str], *, done: asyncio.Semaphore
    ) -> None:
        try:
            await self._deliver(uid, entry, changes, finished)
        finally:
            done.release()

    async def _deliver(self, uid: str, entry: _Entry, changes: dict[str, Any], finished: set[str]) -> None:
        entry.last_patch = self._clock.monotonic()
        for _ in range(3):
            patch = self._merge(entry, changes, finished)
            if not patch:
                return
            rv = ((entry.body or {}).get("metadata") or {}).get("resourceVersion")
            try:
                entry.body = _slim(
                    await self._kube.patch_status(entry.namespace, entry.name, patch, resource_version=rv)
                )
                PATCHES.labels("ok").inc()
                if self._failing:
                    log.warning("status patches succeed again; the changes kept meanwhile catch up")
                    self._failing = False
                return
            except Conflict:
                PATCHES.labels("conflict").inc()
                try:
                    entry.body = _slim(await self._kube.get(entry.namespace, entry.name))
                except Gone:
                    return
                except Exception as err:
                    log_fault(
                        f"re-reading {entry.namespace}/{entry.name} after a conflict (changes kept)", err
                    )
                    break
            except Gone:
                PATCHES.labels("gone").inc()
                return
            except Exception as err:
                PATCHES.labels("error").inc()
                if not self._failing:  # one line per outage, not one per CronConfig and round
                    log_fault(
                        f"status patch of {entry.namespace}/{entry.name} (changes kept and retried)", err
                    )
                self._failing = True
                break
        # keep the changes for the next round, newer values win
        if self._entries.get(uid) is not entry:
            return  # forgotten meanwhile (deleted)
        entry.finished |= finished
        for key, value in changes.items():
            entry.pending.setdefault(key, value)
        self._dirty.add(uid)
        self._wakeup.set()
