"""The composition root: builds one replica's engine from Settings and serves /healthz and /metrics.

Start-up is crash-only: a replica is whole or gone. Any failure while starting is logged as one
line (a traceback only for what looks like a bug), whatever had started is stopped within a bound,
and the process exits non-zero so Kubernetes restarts it; a half-started replica would heartbeat
into Redis, be counted in the sharding of the others, and serve nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

import pydantic
from aiohttp import web
from kubernetes.config import ConfigException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sundial.engine.history import History
from sundial.engine.runtime import Runtime
from sundial.jobs import registry
from sundial.kube import Kube, load_client
from sundial.leases import LocalLeases, RedisLeases, keys
from sundial.leases.base import Leases
from sundial.retrying import is_transient
from sundial.settings import Settings
from sundial.store import migrate
from sundial.store.journal import RedisJournal
from sundial.store.store import RunStore

log = logging.getLogger("sundial")
T = TypeVar("T")

STARTUP_TIMEOUT_SECONDS = 300.0
"""Backstop of the whole start-up, past the engine's own wait for the run history (about 3 minutes)."""
CONTACT_TIMEOUT_SECONDS = 30.0
"""Bound of the first contact with the database and Redis: one that never answers makes the replica
restart, not linger."""
CLEANUP_TIMEOUT_SECONDS = 15.0
"""Bound of stopping what a failed start-up had started: the exit must not wait on a hung dependency."""


class StartupFailed(Exception):
    """Start-up failed: the cause is logged and what had started is stopped; the process must exit."""


class MissingHandlerModule(ImportError):
    """A module named in SUNDIAL_HANDLERS does not exist: a setting's fault, not a bug."""


EXPECTED_FAULTS: tuple[type[BaseException], ...] = (
    migrate.SchemaError,  # the database is not migrated (or migrated by a newer sundial)
    MissingHandlerModule,
    pydantic.ValidationError,  # a malformed SUNDIAL_* variable
    ConfigException,  # no kubeconfig and not in a Pod
)
"""Faults of the environment, not of sundial: logged as one line, like a dependency's outage."""

Faults = tuple[type[BaseException], ...]


def log_startup_failure(what: str, err: BaseException, *, expected: Faults = ()) -> None:
    """One line naming ``what`` failed and why; the traceback only for what looks like a bug."""
    if is_transient(err) or isinstance(err, (*EXPECTED_FAULTS, *expected)):
        log.error("start-up failed (exiting): %s: %s: %s", what, type(err).__name__, summarize(err))
    else:
        log.error("start-up failed (exiting): %s", what, exc_info=err)


def summarize(err: BaseException) -> str:
    """The first line of what ``err`` says (a setting's problems without its value)."""
    if isinstance(err, pydantic.ValidationError):  # never the input: it may be a URL with a password
        return "; ".join(
            f"SUNDIAL_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in err.errors()
        )
    if isinstance(err, TimeoutError) and not str(err):  # the backstop of asyncio.timeout
        return f"start-up not complete within {STARTUP_TIMEOUT_SECONDS:.0f}s"
    lines = str(err).strip().splitlines()
    return lines[0][:300] if lines else ""


def read_settings() -> Settings:
    """The replica's Settings; a malformed variable is logged and raised as :class:`StartupFailed`."""
    try:
        return Settings()
    except pydantic.ValidationError as err:
        log_startup_failure("reading the SUNDIAL_* settings", err)
        raise StartupFailed("reading the SUNDIAL_* settings") from err


def exit_process(code: int = 1) -> NoReturn:
    """End the process now, logs flushed: kopf retries failing start-up handlers forever, and a
    normal exit would wait for worker threads that may hang in a dependency's call."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


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
    _stopped: bool = field(default=False, init=False, repr=False)

    async def stop(self) -> None:
        """Idempotent: kopf's cleanup handler and ``sundial run`` itself may both call it."""
        if self._stopped:
            return
        self._stopped = True
        # a shutdown that outlasts its budget is a bug: every thread's stack goes to the log first
        faulthandler.dump_traceback_later(self.runtime.core.settings.shutdown_grace_seconds + 8)
        started = time.monotonic()
        try:
            await self.runtime.stop()
            await self.web_runner.cleanup()
        finally:
            faulthandler.cancel_dump_traceback_later()
        log.info("stopped in %.1fs", time.monotonic() - started)


@dataclass
class _Parts:
    """What a start-up has opened so far, so that a failure can stop exactly that."""

    step: str = "starting"
    ready: bool = False
    runner: web.AppRunner | None = None
    store: RunStore | None = None
    leases: Leases | None = None
    kube: Kube | None = None
    runtime: Runtime | None = None
    engine_started: bool = False

    async def stop(self) -> None:
        """Best effort, each part bounded: no heartbeat, no open port, no connections left."""
        if self.runtime is not None and self.engine_started:
            # gives back the heartbeat, membership and leases, flushes history, closes the clients
            await _bounded("stopping the engine", self.runtime.stop())
        else:
            if self.runtime is not None:  # a partial engine start: job types may be open
                await _bounded("closing the job types", self.runtime.job_types.close())
            if self.leases is not None:
                await _bounded("closing the Redis client", self.leases.close())
            if self.kube is not None:
                await _bounded("closing the Kubernetes client", self.kube.close())
        if self.store is not None:
            await _bounded("closing the database pool", asyncio.to_thread(self.store.close))
        if self.runner is not None:
            await _bounded("closing the HTTP server", self.runner.cleanup())


async def _bounded(what: str, step: Awaitable[object]) -> None:
    try:
        await asyncio.wait_for(step, timeout=CLEANUP_TIMEOUT_SECONDS)
    except Exception as err:  # the process exits anyway: say so, and go on with the next part
        log.warning("after the failed start-up, %s failed: %s: %s", what, type(err).__name__, summarize(err))


async def _within(seconds: float, step: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(step, timeout=seconds)
    except TimeoutError:
        raise TimeoutError(f"no answer within {seconds:.0f}s") from None


def _load_handlers(modules: list[str]) -> None:
    try:
        registry.load(modules)
    except ModuleNotFoundError as err:  # the module itself, or a package on its path: a typo
        if err.name and any(m == err.name or m.startswith(f"{err.name}.") for m in modules):
            raise MissingHandlerModule(str(err), name=err.name) from err
        raise  # a module that imports something not installed: a traceback helps


def _prepare_store(settings: Settings) -> RunStore:
    if settings.database_url.startswith("sqlite"):
        migrate.upgrade(settings.database_url)  # the embedded default migrates itself
    else:
        migrate.check_schema(settings.database_url)
    return RunStore(settings.database_url)


async def start(settings: Settings) -> App:
    """Start the whole replica, or raise :class:`StartupFailed` with nothing left running."""
    parts = _Parts()
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_SECONDS):
            return await _start(settings, parts)
    except asyncio.CancelledError:  # stopped while starting (SIGTERM): stop what started, go on stopping
        await parts.stop()
        raise
    except Exception as err:
        log_startup_failure(parts.step, err)
        await parts.stop()
        raise StartupFailed(parts.step) from err


async def _start(settings: Settings, parts: _Parts) -> App:
    # The port first: the most common failure, and nothing heartbeats yet. /healthz says 503 until
    # the replica is whole, so neither a probe nor a test takes a starting replica for a live one.
    parts.step = f"serving /healthz and /metrics on {settings.http_host}:{settings.http_port}"
    parts.runner = await serve(settings, ready=lambda: parts.ready)
    parts.step = f"importing the SUNDIAL_HANDLERS modules ({', '.join(settings.handlers) or 'none'})"
    _load_handlers(settings.handlers)
    parts.step = "opening the run history database"
    parts.store = store = await _within(CONTACT_TIMEOUT_SECONDS, asyncio.to_thread(_prepare_store, settings))
    leases: Leases
    if settings.redis_url:
        parts.step = "reaching Redis (SUNDIAL_REDIS_URL)"
        parts.leases = leases = RedisLeases(settings.redis_url)
        # one read: a Redis that is down fails here, not in the engine's background loops
        await _within(CONTACT_TIMEOUT_SECONDS, leases.holder(keys.replica(settings.replica)))
    else:
        log.warning(
            "SUNDIAL_REDIS_URL is not set: using IN-PROCESS locks. Run exactly ONE replica, "
            "or slots will be contended by the database alone."
        )
        parts.leases = leases = LocalLeases()
    if settings.database_url.startswith("sqlite"):
        log.warning(
            "SUNDIAL_DATABASE_URL is not set to a server: run history in SQLite (%s), single replica only",
            settings.database_url,
        )
    parts.step = "loading the Kubernetes client configuration"
    parts.kube = kube = Kube(load_client(), component="sundial", replica=settings.replica)
    parts.step = "starting the engine"
    parts.runtime = runtime = Runtime(
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
    parts.engine_started = True
    parts.step = "finishing the start-up"
    # Long-lived objects (imports, kopf, parsed specs) need no cyclic GC scans; full collections of
    # a large heap otherwise stall the loop for tens of milliseconds right when slots fire.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)
    if log.isEnabledFor(logging.DEBUG):
        gc.callbacks.append(_log_slow_collections)
    parts.ready = True
    log.info(
        "sundial replica %s started (handlers: %s)", settings.replica, ", ".join(registry.names()) or "none"
    )
    return App(runtime=runtime, web_runner=parts.runner, kube=kube)


async def serve(settings: Settings, *, ready: Callable[[], bool] = lambda: True) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        status = "ok" if ready() else "starting"
        return web.json_response(
            {"status": status, "replica": settings.replica}, status=200 if status == "ok" else 503
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    application = web.Application()
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/metrics", metrics)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
