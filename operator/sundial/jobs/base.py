"""The job-type interface: what the engine needs from every kind of work a run can execute.

A job type owns its typed spec model, its shared resources (an HTTP session, a database pool, a
Kubernetes client: opened and closed with the operator) and its attempt lifecycle. The engine only
calls these hooks: it never looks inside a job's spec and never knows which types exist.

- :meth:`JobType.run` executes one attempt and returns its result (or raises :class:`JobFailed`).
  The engine runs it in a task and enforces ``timeoutSeconds``.
- :meth:`JobType.cancel` stops an attempt from outside (``Replace``, timeout, shutdown) before the
  engine cancels the task: a job that runs outside the operator (a Kubernetes Job) deletes it here.
- :meth:`JobType.resume` follows an attempt another replica started and did not finish (takeover);
  a type that cannot (an in-process coroutine died with its replica) leaves ``resumable`` False and
  the attempt is recorded ``Failed`` with reason ``OwnerLost``, then retried per the spec. A
  resumable attempt is detached at shutdown instead of cancelled: its work goes on, its row stays
  ``Running``, and the next replica (or this one, restarted) follows it to its outcome.
- :meth:`JobType.busy` tells ``Forbid`` that work of a CronConfig still runs outside every
  replica (a Job whose owner died), so no second attempt starts beside it.
- :meth:`JobType.check` adds the type's own validation to ``sundial validate`` and the webhook.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from sundial.jobs.context import JobContext
from sundial.models.spec import JobKind, SpecModel

if TYPE_CHECKING:
    from sundial.jobs.itemstore import ItemStore
    from sundial.kube import Kube
    from sundial.settings import Settings

M = TypeVar("M", bound=SpecModel)


UnfinishedRuns = Callable[[Collection[uuid.UUID]], Awaitable[set[uuid.UUID]]]
"""Which of these run ids the history does not yet record as finished."""


@dataclass(frozen=True)
class JobEnvironment:
    """What job types may use of the operator: its settings, its Kubernetes client, the history."""

    settings: Settings
    kube: Kube | None = None
    unfinished_runs: UnfinishedRuns | None = None
    """So work left in the cluster (a finished Job) is only cleaned up once its outcome is recorded."""
    items: ItemStore | None = None
    """Fan-out items in the run history."""


@dataclass(frozen=True)
class Finding:
    """One validation line of a job type: ``path: message``, a problem unless ``warning``."""

    path: str
    message: str
    warning: bool = False


class JobType(abc.ABC, Generic[M]):
    """One kind of job (the field under ``spec.job``); one instance per operator process."""

    kind: ClassVar[JobKind]
    model: ClassVar[type[SpecModel]]
    resumable: ClassVar[bool] = False
    """Whether :meth:`resume` can follow an attempt that another replica started."""

    async def open(self, env: JobEnvironment) -> None:
        """Acquire shared resources; called once when the operator starts."""

    def stopping(self) -> None:
        """Shutdown began: take no new work of the type's own (fan-out workers stop reading items)."""

    async def close(self) -> None:
        """Release what :meth:`open` acquired; called once at shutdown, after the last attempt."""

    @abc.abstractmethod
    async def run(self, spec: M, ctx: JobContext) -> Any:
        """Execute one attempt; the return value (JSON-like) is the run's ``result``."""

    async def cancel(self, spec: M, ctx: JobContext, reason: str) -> None:
        """Stop the attempt's work outside this process; the engine then cancels :meth:`run`."""

    async def resume(self, spec: M, ctx: JobContext) -> Any:
        """Follow an attempt started elsewhere until it finishes, like :meth:`run`."""
        raise NotImplementedError(f"{self.kind} attempts cannot be resumed")

    def busy(self, spec: M, uid: str) -> bool:
        """Whether an attempt of CronConfig ``uid`` still runs outside this process's own tasks."""
        return False

    def check(self, spec: M, *, known_handlers: Collection[str] | None) -> Iterable[Finding]:
        """Problems and warnings of this type's part of a spec the models accepted."""
        return ()
