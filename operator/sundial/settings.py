"""Operator configuration from the environment (prefix ``SUNDIAL_``), parsed once at start-up."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_database_url() -> str:
    return f"sqlite:///{Path.cwd() / 'sundial.db'}"


class Settings(BaseSettings):
    """Everything tunable about one operator replica; defaults are the embedded single-replica setup."""

    model_config = SettingsConfigDict(env_prefix="SUNDIAL_", extra="ignore")

    database_url: str = Field(default_factory=_default_database_url)
    """SQLAlchemy URL of the run history; the default SQLite file suits a single replica only."""
    redis_url: str | None = None
    """Redis for leases across replicas; unset means in-process locks (single replica only)."""
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Namespaces to watch (comma-separated); empty watches the whole cluster."""
    replica: str = Field(default_factory=socket.gethostname)
    """This replica's name, recorded on every run it executes."""
    handlers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Python modules to import so their ``@sundial.job`` handlers register."""
    status_qps: float = 50.0
    """Global budget of status patches per second; each CronConfig is patched at most once a second."""
    status_min_interval: float = 1.0
    """Seconds between two status patches of one CronConfig."""
    lease_ttl_seconds: float = 10.0
    """Lifetime of a lease without renewal: how long a dead replica's work waits before takeover."""
    shutdown_grace_seconds: float = 30.0
    """On SIGTERM, how long running attempts may continue before they are cancelled."""
    fanout_workers: int = Field(default=100, ge=1, le=10000)
    """Fan-out items executing at once on this replica (each run's ``parallelism`` bounds all replicas)."""
    http_port: int = 8080
    """Port of /healthz and /metrics."""
    http_host: str = "0.0.0.0"
    allow_link_local: bool = False
    """Let HTTP jobs call 169.254.0.0/16 (cloud metadata endpoints); off unless explicitly allowed."""
    sql_allow_sqlite: bool = False
    """Let ``sql`` jobs open SQLite files: they are on the operator's own disk, so any user who may
    create a CronConfig could read or write them; off unless explicitly allowed."""
    lookahead_seconds: float = 1.5
    """How early slots are leased and claimed, so the fire instant itself does no I/O. Slots land on
    whole seconds; claiming at half seconds keeps the claim work away from the fire instants."""
    history_flush_seconds: float = 0.2
    """How long finished-run updates may wait to be written in one batch."""

    @field_validator("namespaces", "handlers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    # --- the validating admission webhook (sundial.webhook, sundial.handlers.admission) ---
    webhook_enabled: bool = False
    """Serve the validating admission webhook for CronConfigs (HTTPS, path /validate-cronconfigs)."""
    webhook_addr: str = "0.0.0.0"
    """Address the webhook server listens on."""
    webhook_port: int = 9443
    """Port of the webhook server."""
    webhook_host: str = "127.0.0.1"
    """The name the API server uses to reach the webhook (e.g. ``sundial-webhook.sundial.svc``): a SAN of
    the self-signed certificate and, with ``webhook_managed``, the host of the URL registered."""
    webhook_cert_dir: Path | None = None
    """Directory with ``tls.crt``, ``tls.key`` and ``ca.crt`` provided from outside (a Secret from
    cert-manager or the chart); reloaded when they change. Unset: the operator generates a self-signed CA
    and certificate in a private directory and renews them before they expire."""
    webhook_managed: str | None = None
    """Name of a ValidatingWebhookConfiguration the operator creates and keeps pointing at
    ``https://webhook_host:webhook_port/validate-cronconfigs`` (kopf's managed mode; for local runs)."""
    webhook_configuration: str | None = None
    """Name of an existing ValidatingWebhookConfiguration (created by the chart) whose webhooks get the
    operator's CA bundle as ``clientConfig.caBundle``, re-checked every 30 s."""
    webhook_cert_secret: str | None = None
    """Name of a Secret in ``pod_namespace`` where replicas share the self-signed CA and certificate
    (keys ca.crt, ca.key, tls.crt, tls.key). Unset: each process keeps its own (one replica only)."""
    pod_namespace: str | None = None
    """The operator's own namespace (Downward API), home of ``webhook_cert_secret``; default: the
    service account's namespace."""
