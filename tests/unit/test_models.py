"""The CronConfig models: the contract's example parses, bad specs give one clear line per problem."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pydantic
import pytest
import yaml

from sundial import models

# The contract's example, with one alternative per "exactly one of" (the contract lists them all).
CONTRACT_EXAMPLE = """
apiVersion: sundial.io/v1alpha1
kind: CronConfig
metadata: {name: nightly-report, namespace: team-a}
spec:
  schedule: "0 2 * * *"
  timeZone: Europe/Berlin
  runAt: null
  suspend: false
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: 60
  missedRunPolicy: RunOnce
  jitterSeconds: 0
  timeoutSeconds: 3600
  successfulJobsHistoryLimit: 3
  failedJobsHistoryLimit: 1
  retry: {limit: 0, backoffSeconds: 10, maxBackoffSeconds: 600}
  dryRun: false
  context: {}
  job:
    http:
      url: https://example.com/hook
      method: POST
      headers: {X-Team: a}
      headersFrom: [{name: Authorization, secretKeyRef: {name: hook-token, key: token}}]
      body: {report: daily}
      successStatusCodes: [200, 201, 202, 204]
"""

JOBS: dict[str, dict[str, Any]] = {
    "sql query": {
        "sql": {
            "connectionSecretRef": {"name": "reports-db", "key": "url"},
            "query": "DELETE FROM sessions WHERE expires_at < now()",
            "readOnly": False,
        }
    },
    "sql queryFrom": {
        "sql": {
            "connectionSecretRef": {"name": "reports-db", "key": "url"},
            "queryFrom": {"secretKeyRef": {"name": "q", "key": "sql"}},
        }
    },
    "template": {
        "template": {
            "metadata": {"labels": {"team": "a"}},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}
                }
            },
        }
    },
    "handler": {"handler": {"name": "reports.nightly"}},
    "fanout": {
        "fanout": {
            "source": {"http": {"url": "https://example.com/items", "itemsPath": "$.items"}},
            "each": {"handler": {"name": "reports.one"}},
            "parallelism": 10,
            "itemRetry": {"limit": 3, "backoffSeconds": 10},
        }
    },
    "fanout sql source, http each": {
        "fanout": {
            "source": {"sql": {"connectionSecretRef": {"name": "db", "key": "url"}, "query": "SELECT id"}},
            "each": {"http": {"url": "https://example.com/one", "body": "plain text"}},
        }
    },
    "fanout handler source": {
        "fanout": {"source": {"handler": {"name": "items.list"}}, "each": {"handler": {"name": "items.one"}}}
    },
}


def contract_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(CONTRACT_EXAMPLE)["spec"]
    return spec


def errors_of(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(pydantic.ValidationError) as info:
        models.CronConfigSpec.model_validate(spec)
    return models.format_validation_error(info.value)


def valid(**changes: Any) -> dict[str, Any]:
    return {"schedule": "@hourly", "job": {"http": {"url": "https://example.com"}}, **changes}


# --- the contract example -----------------------------------------------------------------------


def test_contract_example_parses() -> None:
    spec = models.CronConfigSpec.model_validate(contract_spec())
    assert spec.schedule == "0 2 * * *"
    assert spec.time_zone == "Europe/Berlin"
    assert spec.run_at is None
    assert spec.concurrency_policy is models.ConcurrencyPolicy.FORBID
    assert spec.missed_run_policy is models.MissedRunPolicy.RUN_ONCE
    assert spec.starting_deadline_seconds == 60
    assert spec.job.kind is models.JobKind.HTTP
    http = spec.job.http
    assert http is not None and spec.job.selected is http
    assert http.method is models.HttpMethod.POST
    assert http.headers == {"X-Team": "a"}
    assert http.headers_from == [
        models.HeaderFrom(
            name="Authorization", secret_key_ref=models.SecretKeyRef(name="hook-token", key="token")
        )
    ]
    assert http.body == {"report": "daily"}
    assert str(spec.zone) == "Europe/Berlin"


@pytest.mark.parametrize("job", JOBS)
def test_contract_example_parses_with_each_job_type(job: str) -> None:
    spec = models.CronConfigSpec.model_validate({**contract_spec(), "job": JOBS[job]})
    assert spec.job.kind == next(iter(JOBS[job]))


def test_contract_example_round_trips() -> None:
    spec = models.CronConfigSpec.model_validate(contract_spec())
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert models.CronConfigSpec.model_validate(dumped) == spec
    expected = {k: v for k, v in contract_spec().items() if v is not None}
    assert dumped == expected


def test_contract_listing_every_job_at_once_is_rejected() -> None:
    spec = contract_spec()
    spec["job"] |= {name: definition for job in JOBS.values() for name, definition in job.items()}
    assert "spec.job: exactly one of http, sql, template, handler or fanout must be set" in errors_of(spec)


def test_defaults() -> None:
    spec = models.CronConfigSpec.model_validate(valid())
    assert spec.time_zone == "UTC"
    assert spec.suspend is False
    assert spec.concurrency_policy == "Forbid"
    assert spec.missed_run_policy == "RunOnce"
    assert spec.starting_deadline_seconds is None
    assert spec.jitter_seconds == 0
    assert spec.timeout_seconds == 3600
    assert spec.retry == models.RetryPolicy(limit=0, backoff_seconds=10, max_backoff_seconds=600)
    assert spec.dry_run is False
    assert spec.context == {}
    assert spec.job.http is not None
    assert spec.job.http.method == "POST"
    assert spec.job.http.success_status_codes == [200, 201, 202, 204]
    fanout = models.CronConfigSpec.model_validate(
        {**valid(), "job": JOBS["fanout sql source, http each"]}
    ).job.fanout
    assert fanout is not None
    assert fanout.parallelism == 10
    assert fanout.item_retry == models.ItemRetryPolicy(limit=3, backoff_seconds=10, max_backoff_seconds=600)
    partial = models.FanoutJob.model_validate(
        {**JOBS["fanout"]["fanout"], "itemRetry": {"backoffSeconds": 1}}
    )
    assert partial.item_retry.limit == 3
    assert fanout.source.sql is not None and fanout.source.sql.read_only is False


def test_run_at_instead_of_schedule() -> None:
    spec = models.CronConfigSpec.model_validate(
        {"runAt": "2030-03-31T02:30:00+02:00", "job": {"handler": {"name": "x"}}}
    )
    assert spec.schedule is None
    assert spec.run_at == dt.datetime(2030, 3, 31, 0, 30, tzinfo=dt.UTC)
    assert spec.model_dump(mode="json", by_alias=True)["runAt"] == "2030-03-31T00:30:00Z"


def test_run_at_as_parsed_by_yaml() -> None:
    """PyYAML turns an unquoted timestamp into a datetime (``sundial validate`` reads files so)."""
    document = yaml.safe_load("runAt: 2030-01-01T00:00:00Z\njob: {handler: {name: x}}")
    assert isinstance(document["runAt"], dt.datetime)
    assert models.CronConfigSpec.model_validate(document).run_at == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def test_snake_case_names_work_in_python() -> None:
    spec = models.CronConfigSpec(
        schedule="@daily", time_zone="UTC", job=models.JobSpec(handler=models.HandlerJob(name="x"))
    )
    assert spec.model_dump(by_alias=True, exclude_none=True)["timeZone"] == "UTC"


def test_spec_is_read_only() -> None:
    spec = models.CronConfigSpec.model_validate(valid())
    with pytest.raises(pydantic.ValidationError):
        spec.suspend = True  # type: ignore[misc]


def test_http_body_may_be_a_string() -> None:
    spec = models.CronConfigSpec.model_validate(valid(job={"http": {"url": "https://x", "body": "a=1"}}))
    assert spec.job.http is not None and spec.job.http.body == "a=1"


def test_retry_delay_doubles_up_to_the_cap() -> None:
    retry = models.RetryPolicy(limit=10, backoff_seconds=10, max_backoff_seconds=60)
    assert [retry.delay(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]
    assert retry.delay(10_000) == 60
    with pytest.raises(ValueError, match="start at 1"):
        retry.delay(0)


# --- errors, one clear line each ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"job": {"http": {"url": "https://x"}}}, ["spec: exactly one of schedule or runAt must be set"]),
        (
            {"schedule": "@daily", "runAt": "2030-01-01T00:00:00Z", "job": {"handler": {"name": "x"}}},
            ["spec: exactly one of schedule or runAt must be set"],
        ),
        ({"schedule": "@daily"}, ["spec.job: Field required"]),
        (valid(job={}), ["spec.job: exactly one of http, sql, template, handler or fanout must be set"]),
        (valid(job={"http": {}}), ["spec.job.http.url: Field required"]),
        (
            valid(concurrencyPolicy="Sometimes"),
            ["spec.concurrencyPolicy: Input should be 'Allow', 'Forbid' or 'Replace'"],
        ),
        (
            valid(missedRunPolicy="all"),
            ["spec.missedRunPolicy: Input should be 'Skip', 'RunOnce' or 'RunAll'"],
        ),
        (valid(timeZone="Mars/Olympus_Mons"), ["spec.timeZone: unknown time zone 'Mars/Olympus_Mons'"]),
        (valid(timeoutSeconds=0), ["spec.timeoutSeconds: Input should be greater than or equal to 1"]),
        (valid(suspend="yes"), ["spec.suspend: Input should be a valid boolean"]),
        (valid(jitterSeconds="5"), ["spec.jitterSeconds: Input should be a valid integer"]),
        (valid(schedule="x" * 257), ["spec.schedule: String should have at most 256 characters"]),
        (valid(runAt=None, schedule=None), ["spec: exactly one of schedule or runAt must be set"]),
        (
            {"runAt": "2030-01-01T00:00:00", "job": {"handler": {"name": "x"}}},
            ["spec.runAt: Input should have timezone info"],
        ),
        (
            valid(retry={"backoffSeconds": 900}),
            ["spec.retry: backoffSeconds must not exceed maxBackoffSeconds"],
        ),
        (valid(schedulle="@daily"), ["spec.schedulle: Extra inputs are not permitted"]),
        (
            valid(job={"http": {"url": "ftp://x", "method": "FETCH"}}),
            [
                "spec.job.http.url: String should match pattern '^https?://'",
                "spec.job.http.method: Input should be "
                "'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE' or 'OPTIONS'",
            ],
        ),
        (
            valid(job={"http": {"url": "https://x", "headers": {"X-Count": 1}}}),
            ['spec.job.http.headers["X-Count"]: Input should be a valid string'],
        ),
        (
            valid(
                job={
                    "http": {
                        "url": "https://x",
                        "headersFrom": [{"name": "A", "secretKeyRef": {"name": "s"}}],
                    }
                }
            ),
            ["spec.job.http.headersFrom[0].secretKeyRef.key: Field required"],
        ),
        (
            valid(
                job={
                    "http": {
                        "url": "https://x",
                        "headersFrom": [
                            {"name": "A", "secretKeyRef": {"name": "s", "key": "k"}},
                            {"name": "A", "secretKeyRef": {"name": "t", "key": "k"}},
                        ],
                    }
                }
            ),
            ["spec.job.http.headersFrom: duplicate header name(s): A"],
        ),
        (
            valid(job={"http": {"url": "https://x", "body": [1, 2]}}),
            ["spec.job.http.body: body must be a JSON object or a string"],
        ),
        (
            valid(job={"http": {"url": "https://x", "successStatusCodes": [200, 200]}}),
            ["spec.job.http.successStatusCodes: status codes must be unique"],
        ),
        (
            valid(job={"http": {"url": "https://x", "successStatusCodes": [200, 99]}}),
            ["spec.job.http.successStatusCodes[1]: Input should be greater than or equal to 100"],
        ),
        (
            valid(job={"sql": {"connectionSecretRef": {"name": "db", "key": "url"}}}),
            ["spec.job.sql: exactly one of query or queryFrom must be set"],
        ),
        (valid(job={"template": {"metadata": {}}}), ["spec.job.template.spec: Field required"]),
        (
            valid(
                job={
                    "fanout": {"source": {}, "each": {"handler": {"name": "a"}, "http": {"url": "https://x"}}}
                }
            ),
            [
                "spec.job.fanout.source: exactly one of sql, http or handler must be set",
                "spec.job.fanout.each: exactly one of handler or http must be set",
            ],
        ),
        (
            valid(
                job={
                    "fanout": {
                        "source": {"handler": {"name": "a"}},
                        "each": {"handler": {"name": ""}},
                        "parallelism": 0,
                    }
                }
            ),
            [
                "spec.job.fanout.each.handler.name: String should have at least 1 character",
                "spec.job.fanout.parallelism: Input should be greater than or equal to 1",
            ],
        ),
    ],
)
def test_errors_are_one_line_per_problem(spec: dict[str, Any], expected: list[str]) -> None:
    assert errors_of(spec) == expected


def test_error_prefix_can_be_changed_or_dropped() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        models.CronConfigSpec.model_validate({"schedule": "@daily"})
    assert models.format_validation_error(info.value, prefix="items[2].spec") == [
        "items[2].spec.job: Field required"
    ]
    assert models.format_validation_error(info.value, prefix="") == ["job: Field required"]


def test_errors_never_repeat_input_values() -> None:
    secret = "postgresql://user:hunter2@db/reports"
    lines = errors_of(
        valid(
            job={
                "sql": {
                    "connectionSecretRef": {"name": "db", "key": "url"},
                    "query": secret,
                    "queryFrom": {"secretKeyRef": {"name": secret, "key": 1}},
                }
            }
        )
    )
    assert lines
    assert not any("hunter2" in line for line in lines)


def test_plain_value_errors_lose_their_prefix() -> None:
    class Probe(models.CamelModel):
        some_field: int

        @pydantic.field_validator("some_field")
        @classmethod
        def _check(cls, value: int) -> int:
            raise ValueError("is wrong")

    with pytest.raises(pydantic.ValidationError) as info:
        Probe.model_validate({"someField": 1})
    assert models.format_validation_error(info.value) == ["spec.someField: is wrong"]


# --- status --------------------------------------------------------------------------------------


def test_status_serializes_camel_case_rfc3339_without_nulls() -> None:
    berlin = dt.timezone(dt.timedelta(hours=2))
    status = models.CronConfigStatus(
        observed_generation=3,
        conditions=[
            models.Condition(
                type=models.ConditionType.READY,
                status=models.ConditionStatus.TRUE,
                reason="Scheduled",
                last_transition_time=dt.datetime(2030, 1, 1, 3, 0, tzinfo=berlin),
            )
        ],
        next_schedule_time=dt.datetime(2030, 1, 2, 2, 0, tzinfo=dt.UTC),
        last_run=models.LastRun(
            id="0b5f6a5e-5f59-4f43-9c55-5a0c4c6b1f7e",
            scheduled_time=dt.datetime(2030, 1, 1, 2, 0, tzinfo=dt.UTC),
            start_time=dt.datetime(2030, 1, 1, 2, 0, 0, 250000, tzinfo=dt.UTC),
            status=models.RunStatus.RUNNING,
            attempt=1,
            trigger=models.Trigger.SCHEDULE,
        ),
        active=[models.ActiveRun(id="0b5f6a5e-5f59-4f43-9c55-5a0c4c6b1f7e", replica="sundial-0")],
    )
    assert status.to_dict() == {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Scheduled",
                "lastTransitionTime": "2030-01-01T01:00:00Z",
            }
        ],
        "nextScheduleTime": "2030-01-02T02:00:00Z",
        "lastRun": {
            "id": "0b5f6a5e-5f59-4f43-9c55-5a0c4c6b1f7e",
            "scheduledTime": "2030-01-01T02:00:00Z",
            "startTime": "2030-01-01T02:00:00.250000Z",
            "status": "Running",
            "attempt": 1,
            "trigger": "Schedule",
        },
        "active": [{"id": "0b5f6a5e-5f59-4f43-9c55-5a0c4c6b1f7e", "replica": "sundial-0"}],
    }
    assert models.CronConfigStatus.model_validate(status.to_dict()) == status


def test_merge_patch_clears_unset_fields() -> None:
    patch = models.CronConfigStatus(
        last_run=models.LastRun(status=models.RunStatus.SUCCEEDED)
    ).to_merge_patch()
    assert patch["nextScheduleTime"] is None
    assert patch["lastRun"]["status"] == "Succeeded"
    assert patch["lastRun"]["message"] is None
    assert patch["active"] == []


def test_status_reads_what_kubernetes_returns() -> None:
    status = models.CronConfigStatus.model_validate(
        {
            "nextScheduleTime": "2030-01-01T00:00:00Z",
            "lastRun": {"status": "TimedOut", "trigger": "CatchUp", "attempt": 2},
            "fieldFromANewerOperator": True,
        }
    )
    assert status.next_schedule_time == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert status.last_run is not None
    assert status.last_run.status is models.RunStatus.TIMED_OUT
    assert "fieldFromANewerOperator" not in status.to_dict()


def test_long_messages_are_truncated_not_rejected() -> None:
    run = models.LastRun(message="x" * 100_000)
    assert run.message is not None
    assert len(run.message) == models.status.MAX_MESSAGE_LENGTH
    assert run.message.endswith("\N{HORIZONTAL ELLIPSIS}")


def test_set_condition_keeps_transition_time_while_status_holds() -> None:
    t1 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    t2 = t1 + dt.timedelta(hours=1)
    ready = models.Condition(type="Ready", status=models.ConditionStatus.TRUE, last_transition_time=t1)
    suspended = models.Condition(
        type="Suspended", status=models.ConditionStatus.FALSE, last_transition_time=t1
    )

    same = models.set_condition(
        [ready, suspended],
        models.Condition(
            type="Ready", status=models.ConditionStatus.TRUE, reason="Again", last_transition_time=t2
        ),
    )
    assert [c.type for c in same] == ["Ready", "Suspended"]
    assert same[0].last_transition_time == t1 and same[0].reason == "Again"

    flipped = models.set_condition(
        same, models.Condition(type="Ready", status=models.ConditionStatus.FALSE, last_transition_time=t2)
    )
    assert flipped[0].last_transition_time == t2

    added = models.set_condition(
        [ready], models.Condition(type="Invalid", status=models.ConditionStatus.TRUE, last_transition_time=t2)
    )
    assert [c.type for c in added] == ["Ready", "Invalid"]
    assert models.CronConfigStatus(conditions=added).condition("Invalid") == added[1]


# --- run vocabulary ------------------------------------------------------------------------------


def test_run_statuses_and_triggers_are_the_contract_spellings() -> None:
    assert [s.value for s in models.RunStatus] == [
        "Pending",
        "Running",
        "Succeeded",
        "Failed",
        "Skipped",
        "TimedOut",
        "Cancelled",
    ]
    assert [t.value for t in models.Trigger] == ["Schedule", "Manual", "Retry", "CatchUp"]
    assert set(models.RunStatus) - {models.RunStatus.PENDING, models.RunStatus.RUNNING} == models.TERMINAL
    assert models.RunStatus.SKIPPED.is_terminal
    assert not models.RunStatus.RUNNING.is_terminal
    assert f"{models.RunStatus.TIMED_OUT}" == "TimedOut"


def test_timestamps_format_like_kubernetes() -> None:
    assert models.format_timestamp(dt.datetime(2030, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == (
        "2030-01-01T00:00:00Z"
    )
    assert (
        models.format_timestamp(dt.datetime(2030, 1, 1, 0, 0, 0, 5, tzinfo=dt.UTC))
        == "2030-01-01T00:00:00.000005Z"
    )
