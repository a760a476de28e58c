"""The CronConfig resource as data: spec, status and the run vocabulary.

Purely data: pydantic models, enums and the pure functions that go with them. No I/O, no kopf, no
database; every other layer may import this one, and it imports none of them. The CRD in
``crds/`` is pinned to these models by tests.
"""

from sundial.models.base import CamelModel, Timestamp, format_timestamp
from sundial.models.errors import format_location, format_validation_error
from sundial.models.runs import TERMINAL, RunReason, RunStatus, Trigger
from sundial.models.spec import (
    ConcurrencyPolicy,
    CronConfigSpec,
    FanoutEach,
    FanoutJob,
    FanoutSource,
    HandlerJob,
    HeaderFrom,
    HttpJob,
    HttpMethod,
    HttpSource,
    ItemRetryPolicy,
    JobKind,
    JobSpec,
    MissedRunPolicy,
    QueryFrom,
    RetryPolicy,
    SecretKeyRef,
    SqlJob,
    TemplateJob,
)
from sundial.models.status import (
    ActiveRun,
    Condition,
    ConditionReason,
    ConditionStatus,
    ConditionType,
    CronConfigStatus,
    EventReason,
    LastRun,
    set_condition,
)

__all__ = [
    "TERMINAL",
    "ActiveRun",
    "CamelModel",
    "ConcurrencyPolicy",
    "Condition",
    "ConditionReason",
    "ConditionStatus",
    "ConditionType",
    "CronConfigSpec",
    "CronConfigStatus",
    "EventReason",
    "FanoutEach",
    "FanoutJob",
    "FanoutSource",
    "HandlerJob",
    "HeaderFrom",
    "HttpJob",
    "HttpMethod",
    "HttpSource",
    "ItemRetryPolicy",
    "JobKind",
    "JobSpec",
    "LastRun",
    "MissedRunPolicy",
    "QueryFrom",
    "RetryPolicy",
    "RunReason",
    "RunStatus",
    "SecretKeyRef",
    "SqlJob",
    "TemplateJob",
    "Timestamp",
    "Trigger",
    "format_location",
    "format_timestamp",
    "format_validation_error",
    "set_condition",
]
