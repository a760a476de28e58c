"""The Kubernetes Job of one attempt: its deterministic name, its manifest, and how it ended.

Pure functions, shared by the ``template`` job type (which creates and follows Jobs) and by
validation (which has the API server dry-run the same manifest), so what ``kubectl apply``
accepts is exactly what runs at 2 a.m.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sundial.models.base import format_timestamp
from sundial.models.resource import API_VERSION, GROUP, KIND

LABEL_CONFIG = f"{GROUP}/cronconfig"
"""Every Job sundial creates carries it (the CronConfig's name): the one watch selects on it."""
LABEL_RUN = f"{GROUP}/run-id"
ANNOTATION_SCHEDULED = f"{GROUP}/scheduled-for"
ANNOTATION_ATTEMPT = f"{GROUP}/attempt"
ANNOTATION_TRIGGER = f"{GROUP}/trigger"

NAME_LIMIT = 63
"""A Job's name becomes its Pods' ``job-name`` label value, so it must fit in a label."""
HASH_LENGTH = 10
ENV_NAMES = ("SUNDIAL_RUN_ID", "SUNDIAL_SCHEDULED_FOR", "SUNDIAL_ATTEMPT", "SUNDIAL_CONTEXT")
_DROPPED_METADATA = ("name", "generateName", "namespace", "ownerReferences", "finalizers", "uid")


def job_name(config_name: str, config_uid: str, slot: datetime, attempt: int) -> str:
    """``<name>-<hash>``: the same for every replica and every retry of a create, so none duplicates.

    The hash covers the CronConfig's uid, the slot and the attempt, so a CronConfig deleted and
    re-created under the same name never meets its predecessor's Jobs.
    """
    key = f"{config_uid}|{int(slot.timestamp() * 1000)}|{attempt}".encode()
    digest = base64.b32encode(hashlib.sha256(key).digest()).decode().lower()[:HASH_LENGTH]
    prefix = config_name[: NAME_LIMIT - HASH_LENGTH - 1].rstrip("-.")
    return f"{prefix}-{digest}"


def label_value(value: str) -> str:
    """A name as a label value: at most 63 characters, starting and ending alphanumeric."""
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value[:63])


@dataclass(frozen=True)
class JobRun:
    """What the manifest says about the attempt it runs."""

    run_id: str
    config_name: str
    config_uid: str
    namespace: str
    slot: datetime
    attempt: int
    trigger: str
    context: dict[str, Any]
    timeout_seconds: int


def build_job(template: dict[str, Any], run: JobRun) -> dict[str, Any]:
    """The ``batch/v1`` Job of one attempt, from the CronConfig's JobTemplateSpec."""
    meta_in = copy.deepcopy(template.get("metadata") or {})
    spec = copy.deepcopy(template.get("spec") or {})
    metadata = {k: v for k, v in meta_in.items() if k not in _DROPPED_METADATA}
    labels = {
        **(metadata.get("labels") or {}),
        LABEL_CONFIG: label_value(run.config_name),
        LABEL_RUN: run.run_id,
    }
    annotations = {
        **(metadata.get("annotations") or {}),
        ANNOTATION_SCHEDULED: format_timestamp(run.slot),
        ANNOTATION_ATTEMPT: str(run.attempt),
        ANNOTATION_TRIGGER: run.trigger,
    }
    metadata.update(
        name=job_name(run.config_name, run.config_uid, run.slot, run.attempt),
        namespace=run.namespace,
        labels=labels,
        annotations=annotations,
        ownerReferences=[
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": run.config_name,
                "uid": run.config_uid,
                "controller": True,
            }
        ],
    )
    deadline = spec.get("activeDeadlineSeconds")
    if not isinstance(deadline, int) or isinstance(deadline, bool) or deadline > run.timeout_seconds:
        spec["activeDeadlineSeconds"] = run.timeout_seconds
    pod_template = spec.setdefault("template", {})
    if isinstance(pod_template, dict):
        pod_meta = pod_template.setdefault("metadata", {})
        if isinstance(pod_meta, dict):
            pod_meta["labels"] = {
                **(pod_meta.get("labels") or {}),
                LABEL_CONFIG: labels[LABEL_CONFIG],
                LABEL_RUN: run.run_id,
            }
        _inject_env(pod_template.get("spec"), run)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def _inject_env(pod_spec: Any, run: JobRun) -> None:
    """The run's identity in every container, replacing any variable of the same name."""
    if not isinstance(pod_spec, dict):
        return
    values = {
        "SUNDIAL_RUN_ID": run.run_id,
        "SUNDIAL_SCHEDULED_FOR": format_timestamp(run.slot),
        "SUNDIAL_ATTEMPT": str(run.attempt),
        "SUNDIAL_CONTEXT": json.dumps(run.context, separators=(",", ":"), sort_keys=True),
    }
    for field in ("initContainers", "containers"):
        for container in pod_spec.get(field) or ():
            if not isinstance(container, dict):
                continue
            env = [
                e for e in container.get("env") or () if not (isinstance(e, dict) and e.get("name") in values)
            ]
            container["env"] = [*env, *({"name": k, "value": v} for k, v in values.items())]


@dataclass(frozen=True)
class JobView:
    """What sundial keeps of a Job it follows: a few hundred bytes, whatever the Job's size."""

    namespace: str
    name: str
    run_id: str
    owner_uid: str
    outcome: str | None
    """``Complete`` or ``Failed`` once the Job ended, else ``None``."""
    reason: str
    message: str
    succeeded: int
    failed: int
    start_time: str | None
    completion_time: str | None
    deleting: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    def result(self) -> dict[str, Any]:
        """The run's ``result``: which Job ran, how many Pods succeeded and failed, and when."""
        return {
            "job": self.name,
            "namespace": self.namespace,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "startTime": self.start_time,
            "completionTime": self.completion_time,
        }


def view(job: dict[str, Any]) -> JobView:
    """The :class:`JobView` of a Job object as the API returns it."""
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    outcome, reason, message, ended = None, "", "", None
    for cond in status.get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            outcome, reason = cond["type"], str(cond.get("reason") or "")
            message, ended = str(cond.get("message") or ""), cond.get("lastTransitionTime")
            break
    owner = next(
        (o.get("uid", "") for o in meta.get("ownerReferences") or () if o.get("kind") == KIND),
        "",
    )
    return JobView(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        run_id=str((meta.get("labels") or {}).get(LABEL_RUN, "")),
        owner_uid=str(owner),
        outcome=outcome,
        reason=reason,
        message=message,
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        start_time=status.get("startTime"),
        completion_time=status.get("completionTime") or ended,
        deleting=bool(meta.get("deletionTimestamp")),
    )
