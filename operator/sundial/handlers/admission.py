"""kopf glue of the validating admission webhook: the server's configuration and the one handler.

The decision is :func:`sundial.webhook.review.review`; TLS is :mod:`sundial.webhook.serving`. The
handler id is the URL path: the API server calls ``https://<host>:<port>/validate-cronconfigs``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from sundial import app
from sundial.jobs import dryrun
from sundial.models.resource import GROUP, PLURAL, VERSION
from sundial.webhook import WEBHOOK_ID, review, serving

FILE_CHECK_SECONDS = 30.0
"""How often the server looks for renewed certificate files."""
log = logging.getLogger("sundial.webhook")
_SETUP_FAULTS = (RuntimeError, ApiException)
"""What :func:`serving.start` raises for a setting or a permission that is wrong: one line, no traceback."""


class _QuietRejections(logging.Filter):
    """A rejected manifest is the user's error, not the operator's: kopf logs it at ERROR, we at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(f"Webhook {WEBHOOK_ID!r} failed permanently")


class _Off:
    """The webhook switched off (the default): the handler stays registered, but nothing listens.

    kopf refuses to run with admission handlers and no server, so "off" is a server that never starts.
    """

    async def __call__(self, fn: Any) -> AsyncIterator[kopf.WebhookClientConfig]:
        await asyncio.Event().wait()
        yield kopf.WebhookClientConfig()  # never reached


@kopf.on.startup()
async def configure_admission(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Crash-only like the replica's own start-up: a failure here ends the process (kopf would retry)."""
    try:
        config = app.read_settings()
        if not config.webhook_enabled:
            settings.admission.server = _Off()
            return
        tls = await serving.start(config)
    except app.StartupFailed:
        app.exit_process(1)
    except Exception as err:  # a missing certificate, a Secret it may not read, a bad setting
        app.log_startup_failure("preparing the admission webhook's TLS", err, expected=_SETUP_FAULTS)
        app.exit_process(1)
    logging.getLogger("kopf.objects").addFilter(_QuietRejections())
    memo.webhook_tls = tls
    settings.admission.server = kopf.WebhookServer(
        addr=config.webhook_addr,
        port=config.webhook_port,
        host=config.webhook_host,
        certfile=str(tls.certfile),
        pkeyfile=str(tls.keyfile),
        cafile=str(tls.cafile) if tls.cafile else None,
        file_check_interval=FILE_CHECK_SECONDS,
    )
    settings.admission.managed = config.webhook_managed


@kopf.on.cleanup()
async def stop_admission(memo: kopf.Memo, **_: Any) -> None:
    await stop_tls(memo)


async def stop_tls(memo: kopf.Memo) -> None:
    """Stop renewing the certificate and remove the self-signed material's private directory."""
    tls = getattr(memo, "webhook_tls", None)
    if isinstance(tls, serving.WebhookTLS):
        await tls.stop()


@kopf.on.validate(
    GROUP, VERSION, PLURAL, id=WEBHOOK_ID, operations=["CREATE", "UPDATE"], ignore_failures=True
)
async def validate_cronconfig(body: kopf.Body, warnings: list[str], memo: kopf.Memo, **kwargs: Any) -> None:
    old = kwargs.get("old")
    new = dict(body)
    verdict = review.review(
        operation=kwargs.get("operation"),
        new=new,
        old=dict(old) if old is not None else None,
        known_handlers=review.registered_handlers(),
    )
    warnings.extend(verdict.warnings)
    message = verdict.message
    if verdict.allowed and review.changes_spec(new, dict(old) if old is not None else None):
        # a template's Job is Kubernetes' to validate: the API server dry-runs the very Job
        sundial_app = getattr(memo, "app", None)
        if sundial_app is not None:
            problems = await dryrun.dry_run(sundial_app.kube, new)
            message = "; ".join(problems[: review.MAX_PROBLEMS])
    if message:
        meta = body.get("metadata") or {}
        name = meta.get("name") or meta.get("generateName") or "?"
        log.info(
            "rejected %s of CronConfig %s/%s: %s",
            kwargs.get("operation"),
            meta.get("namespace"),
            name,
            message,
        )
        raise kopf.AdmissionError(message, code=422)
