"""The kopf handlers: start-up wiring, every watch event of every CronConfig, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from sundial import app
from sundial.handlers import admission  # also registers the admission webhook
from sundial.models.resource import GROUP, PLURAL, VERSION


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Start the replica whole, or end the process: kopf would retry a failed start-up forever."""
    # Coordination is ours (leases + database fence): kopf's peering would freeze all but one replica.
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    # One short-lived worker per object with events: a cap makes start-up with thousands of
    # CronConfigs crawl (a capped worker idles for idle_timeout before the next object gets one).
    settings.queueing.worker_limit = None
    settings.queueing.idle_timeout = 1.0
    try:
        config = app.read_settings()
        # Namespaced mode runs on Roles only: no cluster-wide scans of namespaces and CRDs.
        settings.scanning.disabled = bool(config.namespaces)
        memo.app = await app.start(config)
    except app.StartupFailed:  # logged, and what had started is stopped
        with contextlib.suppress(Exception):  # the webhook's start-up ran before this one
            await asyncio.wait_for(admission.stop_tls(memo), timeout=app.CLEANUP_TIMEOUT_SECONDS)
        app.exit_process(1)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def cronconfig_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    body = event.get("object")
    if not isinstance(body, dict):
        return
    await memo.app.runtime.observe(body, deleted=event.get("type") == "DELETED")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "app", None) is not None:
        await memo.app.stop()
