"""Playing the kubelet for the tests of ``template`` jobs: there is no node, so Pods stay Pending.

A test ends a Pod itself by patching its status (``phase`` and a terminated container status); the
real Job controller then counts it and sets the Job's conditions, as it would on a real cluster.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.support.kube import Kubectl, wait_until

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
TERMINAL = ("Succeeded", "Failed")


def _items(kubectl: Kubectl, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
    out = kubectl.run("get", kind, "-n", namespace, "-l", selector, "-o", "json").stdout
    return list(json.loads(out)["items"])


def jobs_of(kubectl: Kubectl, namespace: str, config: str) -> list[dict[str, Any]]:
    """The Jobs sundial created for one CronConfig (by its ``sundial.io/cronconfig`` label)."""
    return _items(kubectl, "jobs", namespace, f"sundial.io/cronconfig={config}")


def pods_of(kubectl: Kubectl, namespace: str, job: str) -> list[dict[str, Any]]:
    """The Pods of one Job (the Job controller labels them with the Job's name)."""
    for label in JOB_NAME_LABELS:
        pods = _items(kubectl, "pods", namespace, f"{label}={job}")
        if pods:
            return pods
    return []


def condition(job: dict[str, Any]) -> tuple[str, str] | None:
    """(``Complete``/``Failed``, reason) once the Job ended, else ``None``."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"]), str(cond.get("reason") or "")
    return None


def unfinished(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [j for j in jobs if condition(j) is None and not j["metadata"].get("deletionTimestamp")]


def name_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def terminate(kubectl: Kubectl, namespace: str, pod: dict[str, Any], exit_code: int) -> None:
    """End one Pod as its kubelet would: ``Succeeded`` on exit code 0, else ``Failed``."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = pod["spec"]

    def status(container: dict[str, Any], code: int) -> dict[str, Any]:
        return {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": now,
                    "finishedAt": now,
                }
            },
        }

    patch = {
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "startTime": now,
            "initContainerStatuses": [status(c, 0) for c in spec.get("initContainers") or ()],
            "containerStatuses": [status(c, exit_code) for c in spec["containers"]],
        }
    }
    kubectl.run(
        "patch", "pod", name_of(pod), "-n", namespace,
        "--subresource=status", "--type=merge", "-p", json.dumps(patch),
    )  # fmt: skip


def running_pod(kubectl: Kubectl, namespace: str, job: str, *, timeout: float = 40) -> dict[str, Any]:
    """A Pod of the Job that has not ended yet (waiting for the Job controller to create it)."""

    def pending() -> dict[str, Any] | None:
        pods = pods_of(kubectl, namespace, job)
        live = [
            p
            for p in pods
            if p.get("status", {}).get("phase") not in TERMINAL and not p["metadata"].get("deletionTimestamp")
        ]
        return live[0] if live else None

    return wait_until(pending, timeout=timeout, what=f"a live Pod of Job {namespace}/{job}")


def finish(kubectl: Kubectl, namespace: str, job: str, exit_code: int = 0, *, timeout: float = 40) -> str:
    """End the Job's live Pod with ``exit_code``; returns the Pod's name."""
    pod = running_pod(kubectl, namespace, job, timeout=timeout)
    terminate(kubectl, namespace, pod, exit_code)
    return name_of(pod)


def wait_ended(kubectl: Kubectl, namespace: str, job: str, *, timeout: float = 30) -> tuple[str, str]:
    """The Job's (condition, reason) once the Job controller ended it."""
    return wait_until(
        lambda: condition(kubectl.get("job", job, namespace)),
        timeout=timeout,
        what=f"Job {namespace}/{job} to end",
    )


def job_template(*, backoff_limit: int = 0, init: bool = False, **pod: Any) -> dict[str, Any]:
    """``spec.job`` of a ``template`` CronConfig: one container (and optionally an init container)."""
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {"name": "main", "image": "busybox:1.36", "env": [{"name": "KEEP", "value": "me"}]},
            {"name": "sidecar", "image": "busybox:1.36"},
        ],
        **pod,
    }
    if init:
        pod_spec["initContainers"] = [{"name": "setup", "image": "busybox:1.36"}]
    return {
        "template": {
            "metadata": {"labels": {"team": "data"}, "annotations": {"owner": "tests"}},
            "spec": {"backoffLimit": backoff_limit, "template": {"spec": pod_spec}},
        }
    }
