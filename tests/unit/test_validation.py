"""``sundial.validation``: one message per problem, with the field path; warnings for risky specs.

The same table drives the admission webhook's tests (``tests/integration/test_webhook.py``), so a
message checked here is the message ``kubectl apply`` prints.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sundial import cli, validation
from sundial.webhook import review

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
KNOWN = frozenset({"sundial.noop", "reports.nightly"})


def manifest(name: str = "probe", **spec: Any) -> dict[str, Any]:
    """A valid CronConfig, with ``spec`` fields replaced (``None`` removes one)."""
    body: dict[str, Any] = {"schedule": "*/5 * * * *", "job": {"handler": {"name": "sundial.noop"}}}
    body.update(spec)
    return {
        "apiVersion": "sundial.io/v1alpha1",
        "kind": "CronConfig",
        "metadata": {"name": name, "namespace": "team-a", "creationTimestamp": "2030-05-01T00:00:00Z"},
        "spec": {key: value for key, value in body.items() if value is not None},
    }


def check(obj: dict[str, Any], known: frozenset[str] | None = KNOWN) -> validation.Valid | validation.Invalid:
    return validation.validate_object(obj, known_handlers=known, now=NOW)


def problems(**spec: Any) -> list[str]:
    result = check(manifest(**spec))
    assert isinstance(result, validation.Invalid), f"expected a rejection, got {result}"
    return result.problems


def warnings(**spec: Any) -> list[str]:
    result = check(manifest(**spec))
    assert isinstance(result, validation.Valid), f"expected acceptance, got {result}"
    return result.warnings


HTTP = {"url": "https://example.com/hook"}

# spec fields -> the one problem reported. Shared with the webhook's integration test.
REJECTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "step out of range": (
        {"schedule": "*/61 * * * *"},
        "spec.schedule: minute field value 61 out of range 0-59",
    ),
    "value out of range": (
        {"schedule": "61 * * * *"},
        "spec.schedule: minute field value 61 out of range 0-59",
    ),
    "unparsable": ({"schedule": "every day"}, "spec.schedule: expected 5 or 6 fields, got 2"),
    "never fires": (
        {"schedule": "0 0 30 2 *"},
        "spec.schedule: day-of-month 30 never occurs in February: this schedule can never fire",
    ),
    "unknown time zone": ({"timeZone": "Europe/Berln"}, "spec.timeZone: unknown time zone 'Europe/Berln'"),
    "every below 1s": (
        {"schedule": "@every 500ms"},
        "spec.schedule: @every interval must be at least 1s, got 500ms",
    ),
    "every zero": ({"schedule": "@every 0s"}, "spec.schedule: @every interval must be at least 1s, got 0s"),
    "unknown handler": (
        {"job": {"handler": {"name": "reports.nightyl"}}},
        "spec.job.handler.name: no handler named 'reports.nightyl' is registered "
        "(known: reports.nightly, sundial.noop)",
    ),
    "cross-namespace header secret": (
        {
            "job": {
                "http": {
                    **HTTP,
                    "headersFrom": [
                        {"name": "Authorization", "secretKeyRef": {"name": "t", "key": "k", "namespace": "b"}}
                    ],
                }
            }
        },
        "spec.job.http.headersFrom[0].secretKeyRef.namespace: cross-namespace Secret references are not "
        "allowed: Secrets are read only from the CronConfig's own namespace (remove the namespace field)",
    ),
    "oversized context": (
        {"context": {"blob": "x" * (64 * 1024)}},
        "spec.context: 65547 bytes as JSON, larger than the limit of 64 KiB",
    ),
}


@pytest.mark.parametrize("case", REJECTIONS)
def test_rejection_message(case: str) -> None:
    spec, message = REJECTIONS[case]
    assert problems(**spec) == [message]


def test_a_valid_spec_passes_without_warnings() -> None:
    result = check(manifest())
    assert isinstance(result, validation.Valid)
    assert result.warnings == []
    assert result.schedule.next_after(NOW) == datetime(2030, 5, 1, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "secret_ref",
    [
        {"sql": {"connectionSecretRef": {"name": "db", "key": "url", "namespace": "x"}, "query": "select 1"}},
        {
            "sql": {
                "connectionSecretRef": {"name": "db", "key": "url"},
                "queryFrom": {"secretKeyRef": {"name": "q", "key": "sql", "namespace": "x"}},
            }
        },
        {
            "fanout": {
                "source": {
                    "http": {
                        **HTTP,
                        "headersFrom": [
                            {"name": "A", "secretKeyRef": {"name": "t", "key": "k", "namespace": "x"}}
                        ],
                    }
                },
                "each": {"handler": {"name": "sundial.noop"}},
            }
        },
    ],
    ids=["connectionSecretRef", "queryFrom", "fanout-source"],
)
def test_every_secret_reference_refuses_a_namespace(secret_ref: dict[str, Any]) -> None:
    found = problems(job=secret_ref)
    cross = [line for line in found if "cross-namespace" in line]
    assert len(cross) == 1, found
    assert cross[0].split(": ")[0].endswith(".namespace")
    assert not any("Extra inputs" in line for line in found), "the model's generic message is not repeated"


def test_secret_refs_in_a_job_template_are_kubernetes_business() -> None:
    template = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "env": [
                                {"valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "namespace": "x"}}}
                            ]
                        }
                    ]
                }
            }
        }
    }
    assert not any("cross-namespace" in line for line in problems(job={"template": template}))


def test_unknown_handlers_are_checked_only_when_the_registry_is_known() -> None:
    obj = manifest(job={"handler": {"name": "not.registered"}})
    assert isinstance(check(obj, known=None), validation.Valid)
    assert isinstance(check(obj, known=frozenset()), validation.Invalid)
    result = check(obj, known=frozenset())
    assert isinstance(result, validation.Invalid)
    assert result.problems == [
        "spec.job.handler.name: no handler named 'not.registered' is registered (known: none registered)"
    ]


def test_fanout_handler_names_are_checked_too() -> None:
    fanout = {"source": {"handler": {"name": "src.missing"}}, "each": {"handler": {"name": "each.missing"}}}
    found = problems(job={"fanout": fanout})
    assert "spec.job.fanout.source.handler.name: no handler named 'src.missing' is registered" in " ".join(
        found
    )
    assert "spec.job.fanout.each.handler.name: no handler named 'each.missing' is registered" in " ".join(
        found
    )


def test_context_at_the_limit_is_accepted() -> None:
    padding = 64 * 1024 - len('{"blob":""}')
    assert warnings(context={"blob": "x" * padding}) == []


def test_context_size_counts_utf8_bytes() -> None:
    found = problems(context={"blob": "é" * (33 * 1024)})
    size = len('{"blob":""}') + 2 * 33 * 1024
    assert found == [f"spec.context: {size} bytes as JSON, larger than the limit of 64 KiB"]


def test_every_problem_is_reported_at_once() -> None:
    """The model's problems in field order, then the schedule's: one `kubectl apply` shows them all."""
    assert problems(schedule="61 * * * *", timeZone="Mars/Olympus", timeoutSeconds="soon", job={}) == [
        "spec.timeZone: unknown time zone 'Mars/Olympus'",
        "spec.timeoutSeconds: Input should be a valid integer",
        "spec.job: exactly one of http, sql, template, handler or fanout must be set",
        "spec.schedule: minute field value 61 out of range 0-59",
    ]


def test_handler_names_are_checked_even_when_other_fields_are_wrong() -> None:
    assert problems(timeZone="Mars/Olympus", job={"handler": {"name": "zzz"}}) == [
        "spec.timeZone: unknown time zone 'Mars/Olympus'",
        "spec.job.handler.name: no handler named 'zzz' is registered (known: reports.nightly, sundial.noop)",
    ]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"kind": "CronConfig"}, "spec: required object is missing"),
        ({"spec": ["schedule"]}, "spec: must be an object, got a list"),
        (
            {"spec": {"job": {"handler": {"name": "sundial.noop"}}}},
            "spec: exactly one of schedule or runAt must be set",
        ),
        (
            {
                "spec": {
                    "schedule": "@daily",
                    "runAt": "2031-01-01T00:00:00Z",
                    "job": {"handler": {"name": "x"}},
                }
            },
            "spec: exactly one of schedule or runAt must be set",
        ),
        ({"spec": {"schedule": "@daily"}}, "spec.job: Field required"),
        (
            {"spec": {"schedule": "@daily", "job": {"sql": {"query": "select 1"}}}},
            "spec.job.sql.connectionSecretRef: Field required",
        ),
        (
            {"spec": {"schedule": "@daily", "job": {"handler": {"name": "sundial.noop"}}, "colour": "red"}},
            "spec.colour: Extra inputs are not permitted",
        ),
    ],
)
def test_shape_problems(obj: dict[str, Any], message: str) -> None:
    result = check(obj)
    assert isinstance(result, validation.Invalid)
    assert message in result.problems


def test_fanout_jobs_are_supported() -> None:
    fanout = {"source": {"handler": {"name": "sundial.noop"}}, "each": {"handler": {"name": "sundial.noop"}}}
    assert warnings(job={"fanout": fanout}) == []


def test_unsupported_job_types_are_rejected_with_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    from sundial.jobs import kinds
    from sundial.models.spec import JobKind

    monkeypatch.delitem(kinds.JOB_TYPES, JobKind.FANOUT)  # a build without the fan-out job type
    fanout = {"source": {"handler": {"name": "sundial.noop"}}, "each": {"handler": {"name": "sundial.noop"}}}
    found = problems(job={"fanout": fanout})
    assert found == [
        "spec.job.fanout: job type 'fanout' is not supported by this sundial version yet "
        "(supported: handler, http, sql, template)"
    ]


# ---------------------------------------------------------------------------------------- warnings
def test_run_at_in_the_past_is_a_warning() -> None:
    assert warnings(schedule=None, runAt="2030-04-30T00:00:00Z") == [
        "spec.runAt: 2030-04-30T00:00:00Z is in the past: a one-time run due before the CronConfig was "
        "created never fires"
    ]
    assert warnings(schedule=None, runAt="2030-05-02T00:00:00Z") == []


def test_allow_with_a_timeout_longer_than_the_period() -> None:
    assert warnings(concurrencyPolicy="Allow", schedule="*/5 * * * *", timeoutSeconds=600) == [
        "spec.timeoutSeconds: 600s is longer than the schedule's period (300s) with concurrencyPolicy Allow: "
        "slow runs overlap and can pile up"
    ]
    assert warnings(concurrencyPolicy="Forbid", schedule="*/5 * * * *", timeoutSeconds=600) == []
    assert warnings(concurrencyPolicy="Allow", schedule="*/5 * * * *", timeoutSeconds=300) == []
    assert warnings(concurrencyPolicy="Allow", schedule="@every 90s", timeoutSeconds=91)[0].startswith(
        "spec.timeoutSeconds: 91s is longer than the schedule's period (90s)"
    )


def test_jitter_larger_than_the_period() -> None:
    assert warnings(schedule="* * * * *", jitterSeconds=90, timeoutSeconds=30) == [
        "spec.jitterSeconds: 90s is larger than the schedule's period (60s): a slot's run can start after "
        "the next slot's"
    ]
    assert warnings(schedule="* * * * *", jitterSeconds=60, timeoutSeconds=30) == []


def test_starting_deadline_smaller_than_jitter() -> None:
    assert warnings(schedule="@hourly", jitterSeconds=120, startingDeadlineSeconds=60) == [
        "spec.startingDeadlineSeconds: 60s is smaller than jitterSeconds (120s): a run delayed by jitter can "
        "be past its deadline and skipped (e.g. when caught up after downtime)"
    ]
    assert warnings(schedule="@hourly", jitterSeconds=60, startingDeadlineSeconds=60) == []


def test_link_local_url_is_a_warning() -> None:
    found = warnings(job={"http": {"url": "http://169.254.169.254/latest/meta-data"}})
    assert found == [
        "spec.job.http.url: 169.254.169.254 is a link-local (cloud metadata) address: HTTP jobs refuse it "
        "unless the operator runs with SUNDIAL_ALLOW_LINK_LOCAL=true"
    ]
    assert warnings(job={"http": {"url": "http://10.0.0.1/x"}}) == []


def test_invalid_results_keep_their_warnings() -> None:
    result = check(manifest(schedule=None, runAt="2020-01-01T00:00:00Z", job={"handler": {"name": "nope"}}))
    assert isinstance(result, validation.Invalid)
    assert [line.split(":")[0] for line in result.warnings] == ["spec.runAt"]


# ----------------------------------------------------------------------------------- hostile input
def test_never_raises_on_hostile_shapes() -> None:
    loop: list[Any] = []
    loop.append(loop)  # YAML aliases can build this
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(5000):
        cursor["a"] = {}
        cursor = cursor["a"]
    wide = {
        "schedule": "@daily",
        "job": {"handler": {"name": "sundial.noop"}},
        "context": {"k": list(range(200_000))},
    }
    cases: list[Any] = [
        None,
        [],
        "spec",
        42,
        {"spec": loop},
        {"spec": {"context": loop}},
        {"spec": {"schedule": "@daily", "context": deep, "job": {"handler": {"name": "x"}}}},
        {"spec": wide},
        {"metadata": [], "spec": {"schedule": "@every 1s"}},
        {"metadata": {"creationTimestamp": "yesterday"}, "spec": {"schedule": "@every 1s"}},
        {"spec": {"schedule": "@daily", "job": {"handler": {"name": "x"}}, "context": {"n": 10**5000}}},
    ]
    for obj in cases:
        result = validation.validate_object(obj, now=NOW)
        assert isinstance(result, validation.Invalid), obj if not isinstance(obj, dict) else list(obj)
        assert result.problems and all(isinstance(line, str) and ": " in line for line in result.problems)


def test_depth_and_size_limits_name_the_field() -> None:
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(100):
        cursor["a"] = {}
        cursor = cursor["a"]
    assert problems(context=deep) == ["spec.context: nested deeper than 64 levels"]
    assert problems(context={"k": list(range(validation.MAX_VALUES))}) == [
        "spec: too large: more than 100000 values"
    ]


def test_a_validator_bug_becomes_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret-looking detail")

    monkeypatch.setattr(validation, "_check_job", broken)
    result = check(manifest())
    assert isinstance(result, validation.Invalid)
    assert result.problems == ["spec: could not be validated (RuntimeError)"]


def test_the_object_is_not_modified() -> None:
    obj = manifest(context={"a": [1, 2]}, schedule="@every 1h")
    before = copy.deepcopy(obj)
    check(obj)
    assert obj == before


# -------------------------------------------------------------------------- the admission decision
def test_review_rejects_with_every_problem() -> None:
    verdict = review.review(
        operation="CREATE", new=manifest(schedule="*/61 * * * *"), known_handlers=KNOWN, now=NOW
    )
    assert not verdict.allowed
    assert verdict.message == "spec.schedule: minute field value 61 out of range 0-59"
    verdict = review.review(
        operation="CREATE",
        new=manifest(schedule="61 * * * *", timeZone="Nowhere/Land"),
        known_handlers=KNOWN,
        now=NOW,
    )
    assert verdict.message == (
        "spec.timeZone: unknown time zone 'Nowhere/Land'; "
        "spec.schedule: minute field value 61 out of range 0-59"
    )


def test_review_passes_warnings_on() -> None:
    verdict = review.review(
        operation="CREATE", new=manifest(schedule="* * * * *", jitterSeconds=90, timeoutSeconds=10), now=NOW
    )
    assert verdict.allowed
    assert verdict.warnings and verdict.warnings[0].startswith("spec.jitterSeconds: 90s")


def test_review_lets_metadata_changes_and_deletion_of_bad_objects_through() -> None:
    bad = manifest(schedule="*/61 * * * *")
    annotated = copy.deepcopy(bad)
    annotated["metadata"]["annotations"] = {"sundial.io/run-now": "1"}
    assert review.review(operation="UPDATE", new=annotated, old=bad, now=NOW).allowed
    deleting = copy.deepcopy(bad)
    deleting["metadata"]["deletionTimestamp"] = "2030-05-01T00:00:00Z"
    deleting["spec"]["schedule"] = "*/62 * * * *"
    assert review.review(operation="UPDATE", new=deleting, old=bad, now=NOW).allowed
    assert review.review(operation="DELETE", new=None, old=bad, now=NOW).allowed
    changed = copy.deepcopy(bad)
    changed["spec"]["schedule"] = "*/62 * * * *"
    assert not review.review(operation="UPDATE", new=changed, old=bad, now=NOW).allowed
    fixed = copy.deepcopy(bad)
    fixed["spec"]["schedule"] = "*/6 * * * *"
    assert review.review(operation="UPDATE", new=fixed, old=bad, now=NOW).allowed


def test_review_caps_the_message() -> None:
    headers = [
        {"name": f"H{i}", "secretKeyRef": {"name": "s", "key": "k", "namespace": "x"}} for i in range(30)
    ]
    verdict = review.review(
        operation="CREATE", new=manifest(job={"http": {**HTTP, "headersFrom": headers}}), now=NOW
    )
    assert not verdict.allowed
    assert verdict.message.count("cross-namespace") == review.MAX_PROBLEMS
    assert verdict.message.endswith("and 10 more problem(s)")


# -------------------------------------------------------------------------------- sundial validate
def test_cli_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    monkeypatch.delenv("SUNDIAL_HANDLERS", raising=False)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump_all([manifest("fine"), {"kind": "ConfigMap", "metadata": {"name": "x"}}]))
    risky = tmp_path / "risky.yaml"
    risky.write_text(
        yaml.safe_dump(manifest("risky", schedule="* * * * *", jitterSeconds=90, timeoutSeconds=5))
    )
    bad = tmp_path / "bad.yaml"
    listed = {
        "kind": "List",
        "items": [manifest("b1", schedule="*/61 * * * *"), manifest("b2", timeZone="Europe/Berln")],
    }
    bad.write_text(yaml.safe_dump(listed))
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [\n")

    assert cli.main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == ""
    assert cli.main(["validate", str(risky)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{risky}: CronConfig team-a/risky: warning: spec.jitterSeconds: 90s is larger")

    assert cli.main(["validate", str(good), str(bad), str(broken), str(tmp_path / "missing.yaml")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        f"{bad}: CronConfig team-a/b1: spec.schedule: minute field value 61 out of range 0-59",
        f"{bad}: CronConfig team-a/b2: spec.timeZone: unknown time zone 'Europe/Berln'",
    ]
    assert lines[2].startswith(f"{broken}: not valid YAML: ")
    assert lines[3].startswith(f"{tmp_path / 'missing.yaml'}: cannot read: ")
    assert len(lines) == 4


def test_cli_validate_checks_handlers_named_in_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump(manifest("h", job={"handler": {"name": "reports.nope"}})))
    monkeypatch.setenv("SUNDIAL_HANDLERS", "sundial.jobs.builtin")
    assert cli.main(["validate", str(path)]) == 1
    assert "spec.job.handler.name: no handler named 'reports.nope' is registered" in capsys.readouterr().out
