"""The Job of an attempt: deterministic names that fit in a label, and what every Job carries."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sundial.jobs.kubejob import JobRun, build_job, job_name, label_value, view

SLOT = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def run(**changes: Any) -> JobRun:
    base: dict[str, Any] = {
        "run_id": "6d0f1c1e-0000-4000-8000-000000000001",
        "config_name": "nightly",
        "config_uid": "0b9a8c4e-1111-4222-8333-444455556666",
        "namespace": "team-a",
        "slot": SLOT,
        "attempt": 1,
        "trigger": "Schedule",
        "context": {"team": "a", "n": 1},
        "timeout_seconds": 600,
    }
    return JobRun(**{**base, **changes})


def template(**pod: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "labels": {"team": "a"},
            "annotations": {"note": "x"},
            "name": "ignored",
            "namespace": "other",
        },
        "spec": {
            "backoffLimit": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "initContainers": [{"name": "init", "image": "busybox"}],
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox",
                            "env": [{"name": "SUNDIAL_RUN_ID", "value": "forged"}],
                        },
                        {"name": "side", "image": "busybox", "env": [{"name": "KEEP", "value": "1"}]},
                    ],
                    **pod,
                }
            },
        },
    }


@given(
    name=st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", fullmatch=True),
    seconds=st.integers(min_value=0, max_value=10**9),
    attempt=st.integers(min_value=1, max_value=100),
)
def test_names_are_valid_labels_and_deterministic(name: str, seconds: int, attempt: int) -> None:
    slot = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    uid = str(uuid.UUID(int=seconds))
    first = job_name(name, uid, slot, attempt)
    assert first == job_name(name, uid, slot, attempt)
    assert len(first) <= 63 and DNS_LABEL.match(first), first
    assert first != job_name(name, uid, slot, attempt + 1)
    assert first != job_name(name, uid, slot + timedelta(seconds=1), attempt)
    assert first != job_name(name, str(uuid.UUID(int=seconds + 1)), slot, attempt)


def test_the_name_keeps_the_cronconfig_readable() -> None:
    assert re.fullmatch(r"nightly-[a-z2-7]{10}", job_name("nightly", "u", SLOT, 1))
    long = "a" * 60 + "-b"
    assert job_name(long, "u", SLOT, 1).startswith("a" * 52 + "-")


def test_the_job_carries_identity_owner_deadline_and_environment() -> None:
    job = build_job(template(), run())
    meta = job["metadata"]
    assert meta["name"] == job_name("nightly", run().config_uid, SLOT, 1)
    assert meta["namespace"] == "team-a"  # the CronConfig's namespace, never the template's
    assert meta["labels"] == {
        "team": "a",
        "sundial.io/cronconfig": "nightly",
        "sundial.io/run-id": run().run_id,
    }
    assert meta["annotations"] == {
        "note": "x",
        "sundial.io/scheduled-for": "2026-12-01T03:00:00Z",
        "sundial.io/attempt": "1",
        "sundial.io/trigger": "Schedule",
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "sundial.io/v1alpha1",
            "kind": "CronConfig",
            "name": "nightly",
            "uid": run().config_uid,
            "controller": True,
        }
    ]
    spec = job["spec"]
    assert spec["activeDeadlineSeconds"] == 600 and spec["backoffLimit"] == 2
    pod = spec["template"]
    assert pod["metadata"]["labels"]["sundial.io/run-id"] == run().run_id
    expected = {
        "SUNDIAL_RUN_ID": run().run_id,
        "SUNDIAL_SCHEDULED_FOR": "2026-12-01T03:00:00Z",
        "SUNDIAL_ATTEMPT": "1",
        "SUNDIAL_CONTEXT": json.dumps({"n": 1, "team": "a"}, separators=(",", ":")),
    }
    for container in [*pod["spec"]["initContainers"], *pod["spec"]["containers"]]:
        env = {e["name"]: e["value"] for e in container["env"]}
        assert {k: env[k] for k in expected} == expected, container["name"]
        assert [e["name"] for e in container["env"]].count("SUNDIAL_RUN_ID") == 1
    assert {"name": "KEEP", "value": "1"} in pod["spec"]["containers"][1]["env"]


def test_a_shorter_deadline_of_the_template_is_kept_a_longer_one_capped() -> None:
    shorter = template()
    shorter["spec"]["activeDeadlineSeconds"] = 60
    assert build_job(shorter, run())["spec"]["activeDeadlineSeconds"] == 60
    longer = template()
    longer["spec"]["activeDeadlineSeconds"] = 6000
    assert build_job(longer, run())["spec"]["activeDeadlineSeconds"] == 600


def test_the_template_is_not_modified() -> None:
    original = template()
    snapshot = json.dumps(original, sort_keys=True)
    build_job(original, run())
    assert json.dumps(original, sort_keys=True) == snapshot


def test_long_names_become_valid_label_values() -> None:
    value = label_value("a" * 62 + ".b")
    assert len(value) <= 63 and value[-1].isalnum()


def test_the_view_of_a_finished_job() -> None:
    job = build_job(template(), run())
    job["status"] = {
        "succeeded": 0,
        "failed": 2,
        "startTime": "2026-12-01T03:00:01Z",
        "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "2026-12-01T03:00:09Z",
            },
        ],
    }
    seen = view(job)
    assert (seen.outcome, seen.reason, seen.failed) == ("Failed", "BackoffLimitExceeded", 2)
    assert seen.owner_uid == run().config_uid and seen.run_id == run().run_id
    assert seen.result()["completionTime"] == "2026-12-01T03:00:09Z"
    running = build_job(template(), run())
    running["status"] = {"active": 1, "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}
    assert view(running).outcome is None
