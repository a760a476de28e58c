"""The API server's own verdict on a ``template``: the Job it would create, created with ``dryRun=All``.

The Job's schema is Kubernetes' (hundreds of pod fields, admission plugins, policies), so sundial
does not re-implement it: the webhook and ``sundial validate --server`` ask the API server to
validate exactly the manifest an attempt would create, and nothing is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sundial.jobs.kubejob import JobRun, build_job
from sundial.kube import ApiError, Gone, Kube
from sundial.retrying import is_transient

PLACEHOLDER_UID = str(uuid.UUID(int=0))
FIELD_PREFIX = "spec.job.template"


def template_job(obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any] | None:
    """The Job a CronConfig object's first attempt would create; ``None`` if it has no template."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else None
    job = spec.get("job") if spec is not None else None
    template = job.get("template") if isinstance(job, Mapping) else None
    if not isinstance(template, Mapping) or spec is None:
        return None
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    timeout = spec.get("timeoutSeconds")
    context = spec.get("context")
    run = JobRun(
        run_id=PLACEHOLDER_UID,
        config_name=str(meta.get("name") or meta.get("generateName") or "cronconfig").rstrip("-")
        or "cronconfig",
        config_uid=str(meta.get("uid") or PLACEHOLDER_UID),
        namespace=str(namespace or meta.get("namespace") or "default"),
        slot=datetime.now(UTC).replace(microsecond=0),
        attempt=1,
        trigger="Schedule",
        context=dict(context) if isinstance(context, Mapping) else {},
        timeout_seconds=timeout if isinstance(timeout, int) and not isinstance(timeout, bool) else 3600,
    )
    return build_job(dict(template), run)


async def dry_run(kube: Kube, obj: Mapping[str, Any], *, namespace: str | None = None) -> list[str]:
    """Problems the API server finds in the CronConfig's Job, as ``spec.job.template.<field>: message``."""
    manifest = template_job(obj, namespace=namespace)
    if manifest is None:
        return []
    ns = manifest["metadata"]["namespace"]
    try:
        await kube.api(
            "POST", f"/apis/batch/v1/namespaces/{ns}/jobs", body=manifest, params={"dryRun": "All"}
        )
    except ApiError as err:
        if err.status == 422 and err.causes:
            return [_problem(cause) for cause in err.causes]
        return [f"{FIELD_PREFIX}: the API server refused the Job: {err}"]
    except Gone as err:
        return [f"metadata.namespace: namespace {ns!r} not found ({err})"]
    except Exception as err:
        if is_transient(err):
            return [f"{FIELD_PREFIX}: cannot reach the API server to validate the Job: {err}"]
        raise
    return []


def _problem(cause: Mapping[str, Any]) -> str:
    """One cause of a 422: the Job's field path is the template's, under ``spec.job.template``."""
    field = str(cause.get("field") or "")
    message = str(cause.get("message") or cause.get("reason") or "invalid")
    return f"{FIELD_PREFIX}.{field}: {message}" if field else f"{FIELD_PREFIX}: {message}"
