"""Which job types this build supports, keyed by ``JobKind``: the engine and validation ask here.

Adding a job type is a module with a :class:`~sundial.jobs.base.JobType` subclass, its model in
``models/spec.py`` and its CRD schema, and one line in :data:`JOB_TYPES`; nothing in the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sundial.jobs.base import JobEnvironment, JobType
from sundial.jobs.fanout import FanoutJobType
from sundial.jobs.handler import HandlerJobType
from sundial.jobs.http import HttpJobType
from sundial.jobs.sql import SqlJobType
from sundial.jobs.template import TemplateJobType
from sundial.models.spec import JobKind, JobSpec, SpecModel

log = logging.getLogger("sundial.jobs")

JOB_TYPES: dict[JobKind, type[JobType[Any]]] = {
    JobKind.HTTP: HttpJobType,
    JobKind.HANDLER: HandlerJobType,
    JobKind.SQL: SqlJobType,
    JobKind.TEMPLATE: TemplateJobType,
    JobKind.FANOUT: FanoutJobType,
}


def supported() -> frozenset[str]:
    """The ``spec.job`` fields this build can run."""
    return frozenset(str(kind) for kind in JOB_TYPES)


def for_check(kind: JobKind) -> JobType[Any] | None:
    """A job type instance for validation only (no resources opened)."""
    cls = JOB_TYPES.get(kind)
    return cls() if cls is not None else None


class JobTypes:
    """One instance of every job type, opened with the operator and closed after the last attempt."""

    def __init__(self, types: Mapping[JobKind, JobType[Any]] | None = None) -> None:
        """``types`` replaces the built-in set (tests run the engine with job types of their own)."""
        self._types: dict[JobKind, JobType[Any]] = (
            dict(types) if types is not None else {kind: cls() for kind, cls in JOB_TYPES.items()}
        )

    async def open(self, env: JobEnvironment) -> None:
        for job_type in self._types.values():
            await job_type.open(env)

    def stopping(self) -> None:
        for job_type in self._types.values():
            job_type.stopping()

    async def close(self) -> None:
        for job_type in self._types.values():
            try:
                await job_type.close()
            except Exception:
                log.exception("closing the %s job type failed", job_type.kind)

    def resolve(self, job: JobSpec) -> tuple[JobType[Any], SpecModel] | None:
        """The job type and its typed spec for a ``spec.job``; ``None`` if this build lacks it."""
        job_type = self._types.get(job.kind)
        return (job_type, job.selected) if job_type is not None else None
