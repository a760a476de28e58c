"""Prometheus metrics of the operator; every name starts with ``sundial_``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter("sundial_runs_total", "Finished runs by status and trigger", ["status", "trigger"])
FIRE_LAG = Histogram(
    "sundial_fire_lag_seconds",
    "Actual start minus the scheduled instant (jitter excluded)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ACTIVE = Gauge("sundial_active_runs", "Attempts executing on this replica")
LEASE_CONFLICTS = Counter("sundial_lease_conflicts_total", "Slots another replica claimed first", ["kind"])
SCHEDULED = Gauge("sundial_scheduled_cronconfigs", "CronConfigs with a next fire time on this replica")
INVALID = Gauge("sundial_invalid_cronconfigs", "CronConfigs rejected by validation")
TAKEOVERS = Counter("sundial_takeovers_total", "Runs of dead replicas taken over")
KUBE_REQUESTS = Counter(
    "sundial_kube_requests_total",
    "Requests to the Kubernetes API server (kopf's own CronConfig watch not included)",
    ["verb", "resource"],
)
DB_STATEMENTS = Counter(
    "sundial_db_statements_total", "Statements sent to the run history database (one round trip each)"
)
FANOUT_ITEMS = Counter(
    "sundial_fanout_items_total",
    "Attempts of fan-out items by outcome (Succeeded, Failed: retried later, DeadLettered)",
    ["status"],
)
FANOUT_IN_FLIGHT = Gauge("sundial_fanout_items_in_flight", "Fan-out items executing on this replica")
