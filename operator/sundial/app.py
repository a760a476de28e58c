"""The composition root: builds one replica's engine from Settings and serves /healthz and /metrics."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sundial.engine.history import History
from sundial.engine.runtime import Runtime
from sundial.jobs import registry
from sundial.kube import Kube, load_client
from sundial.leases import LocalLeases, RedisLeases
from sundial.leases.base import Leases
from sundial.settings import Settings
from sundial.store import migrate
from sundial.store.journal import RedisJournal
from sundial.store.store import RunStore

log = logging.getLogger("sundial")


_gc_started = 0.0


def _log_slow_collections(phase: str, info: dict[str, int]) -> None:
    """Debug only: full collections that pause the event loop long enough to delay firing."""
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    elif (took := (time.perf_counter() - _gc_started) * 1000) > 5:
        log.debug("gc generation %d took %.1fms (%d collected)", info["generation"], took, info["collected"])


@dataclass
class App:
    runtime: Runtime
    web_runner: web.AppRunner
    kube: Kube

    async def stop(self) -> None:
        await self.runtime.stop()
        await self.web_runner.cleanup()


def _prepare_store(settings: Settings) -> RunStore:
    if settings.database_url.startswith("sqlite"):
        migrate.upgrade(settings.database_url)  # the embedded default migrates itself
    else:
        migrate.check_schema(settings.database_url)
    return RunStore(settings.database_url)


async def start(settings: Settings) -> App:
    registry.load(settings.handlers)
    store = await asyncio.to_thread(_prepare_store, settings)
    leases: Leases
    if settings.redis_url:
        leases = RedisLeases(settings.redis_url)
    else:
        log.warning(
            "SUNDIAL_REDIS_URL is not set: using IN-PROCESS locks. Run exactly ONE replica, "
            "or slots will be contended by the database alone."
        )
        leases = LocalLeases()
    if settings.database_url.startswith("sqlite"):
        log.warning(
            "SUNDIAL_DATABASE_URL is not set to a server: run history in SQLite (%s), single replica only",
            settings.database_url,
        )
    kube = Kube(load_client(), component="sundial", replica=settings.replica)
    runtime = Runtime(
        settings,
        kube=kube,
        history=History(
            store,
            journal=RedisJournal(settings.redis_url) if settings.redis_url else None,
            flush_seconds=settings.history_flush_seconds,
        ),
        leases=leases,
    )
    await runtime.start()
    runner = await serve(settings)
    # Long-lived objects (imports, kopf, parsed specs) need no cyclic GC scans; full collections of
    # a large heap otherwise stall the loop for tens of milliseconds right when slots fire.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)
    if log.isEnabledFor(logging.DEBUG):
        gc.callbacks.append(_log_slow_collections)
    log.info(
        "sundial replica %s started (handlers: %s)", settings.replica, ", ".join(registry.names()) or "none"
    )
    return App(runtime=runtime, web_runner=runner, kube=kube)


async def serve(settings: Settings) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "replica": settings.replica})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    application = web.Application()
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/metrics", metrics)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    return runner
