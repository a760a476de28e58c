"""Hostile specs through the validator and the scheduler: nothing escapes, accepted specs schedule.

Several strategies (a few thousand specs in all, well under 30 s): arbitrary JSON as the spec,
well-formed specs with hostile field values, cron-shaped schedules from a grammar, and deep or
incomplete objects. For each: ``validate_object`` returns instead of raising, and not through its catch-all
(a ``could not be validated`` problem means the validator crashed); a rejection has at least one
``path: message`` line; an accepted spec's schedule answers ``next_after``/``prev_before``/
``count_between`` without raising, and a repeating schedule always has a next slot.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sundial import validation
from sundial.scheduling import jitter_offset
from sundial.scheduling.oneshot import OneShot

NOW = datetime(2031, 3, 30, 0, 30, tzinfo=UTC)  # near a DST change in Europe
KNOWN = frozenset({"sundial.noop", "reports.nightly"})
CRASHED = "could not be validated"
"""What ``validate_object`` reports when the validator itself raised (its catch-all)."""
FUZZ = settings(
    max_examples=1200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# --------------------------------------------------------------------------------- building blocks
huge_ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**4000, -(10**4000)]),
)
floats = st.floats(allow_nan=True, allow_infinity=True)
texts = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=80),
    st.sampled_from(["", " ", "\x00", "\u202e", "💥" * 50, "a" * 5000, "../../etc/passwd", "${jndi:x}"]),
)
keys = st.one_of(
    st.text(max_size=8), st.sampled_from(["", "\x00", "💥", "schedule", "namespace", "secretKeyRef", "job"])
)
scalars = st.one_of(st.none(), st.booleans(), huge_ints, floats, texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=6), st.dictionaries(keys, children, max_size=6)),
    max_leaves=25,
)

cron_atoms = st.one_of(
    st.sampled_from(
        ["*", "?", "L", "W", "#", "-", "/", ",", "*/0", "*/1", "5-", "-5", "1-0", "mon-fri", "jan", "FEB"]
    ),
    st.integers(min_value=-5, max_value=100).map(str),
    st.builds(lambda a, b: f"{a}-{b}", st.integers(0, 70), st.integers(0, 70)),
    st.builds(lambda a, s: f"{a}/{s}", st.sampled_from(["*", "0", "5", "1-30"]), st.integers(0, 100)),
    st.builds(lambda n: "9" * n, st.integers(1, 400)),
)
cron_fields = st.lists(cron_atoms, min_size=1, max_size=3).map(",".join)
schedules = st.one_of(
    st.lists(cron_fields, min_size=4, max_size=7).map(" ".join),
    st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@reboot", "@every", "@daily x"]),
    st.builds(
        lambda n, unit: f"@every {n}{unit}",
        st.one_of(st.integers(0, 10**6), st.integers(0, 10**40)),
        st.sampled_from(["s", "m", "h", "ms", "us", "d", "", "h30m"]),
    ),
    st.builds(lambda f: f"@every {f}s", st.floats(min_value=0, max_value=5, allow_nan=False)),
    texts,
)
zones = st.one_of(
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]),
    st.sampled_from(sorted(zoneinfo.available_timezones())),
    texts,
    scalars,
)
instants = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.sampled_from(
        ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2031-03-30T02:30:00+02:00", "tomorrow"]
    ),
    scalars,
)
names = st.one_of(st.sampled_from(sorted(KNOWN)), texts)
secret_refs = st.fixed_dictionaries(
    {"name": names, "key": names}, optional={"namespace": texts, "extra": json_values}
)
jobs = st.one_of(
    st.fixed_dictionaries({"handler": st.fixed_dictionaries({"name": names})}),
    st.fixed_dictionaries(
        {
            "http": st.fixed_dictionaries(
                {
                    "url": st.one_of(
                        st.just("https://example.com/x"), st.just("http://169.254.169.254/"), texts
                    )
                },
                optional={
                    "method": st.one_of(st.just("GET"), texts),
                    "headers": st.dictionaries(keys, texts, max_size=3),
                    "headersFrom": st.lists(
                        st.fixed_dictionaries({"name": names, "secretKeyRef": secret_refs}), max_size=3
                    ),
                    "body": json_values,
                    "successStatusCodes": st.lists(huge_ints, max_size=4),
                },
            )
        }
    ),
    st.fixed_dictionaries(
        {"sql": st.fixed_dictionaries({"connectionSecretRef": secret_refs}, optional={"query": texts})}
    ),
    st.dictionaries(st.sampled_from(["http", "sql", "template", "handler", "fanout", "other"]), json_values),
    json_values,
)
specs = st.fixed_dictionaries(
    {},
    optional={
        "schedule": schedules,
        "timeZone": zones,
        "runAt": instants,
        "suspend": st.one_of(st.booleans(), scalars),
        "concurrencyPolicy": st.one_of(st.sampled_from(["Allow", "Forbid", "Replace"]), scalars),
        "startingDeadlineSeconds": st.one_of(st.integers(1, 3600), huge_ints, scalars),
        "missedRunPolicy": st.one_of(st.sampled_from(["Skip", "RunOnce", "RunAll"]), scalars),
        "jitterSeconds": st.one_of(st.integers(0, 7200), huge_ints, scalars),
        "timeoutSeconds": st.one_of(st.integers(1, 7200), huge_ints, scalars),
        "retry": st.one_of(
            st.fixed_dictionaries({}, optional={"limit": huge_ints, "backoffSeconds": huge_ints}), scalars
        ),
        "dryRun": scalars,
        "context": st.one_of(st.dictionaries(keys, json_values, max_size=5), json_values),
        "job": jobs,
    },
)


def deep(depth: int, leaf: Any, key: str) -> Any:
    value = leaf
    for level in range(depth):
        value = {key: value} if level % 2 else [value]
    return value


def wrap(spec: Any, creation: Any = "2031-03-29T23:00:00Z") -> dict[str, Any]:
    return {
        "apiVersion": "sundial.io/v1alpha1",
        "kind": "CronConfig",
        "metadata": {"name": "fuzz", "namespace": "default", "uid": "u-1", "creationTimestamp": creation},
        "spec": spec,
    }


# ------------------------------------------------------------------------------------ the property
def assert_handled(obj: Any, known: frozenset[str] | None = KNOWN) -> validation.Valid | validation.Invalid:
    result = validation.validate_object(obj, known_handlers=known, now=NOW)
    if isinstance(result, validation.Invalid):
        assert result.problems, "a rejection names at least one problem"
        # validate_object's catch-all turns a validator crash into this line: a bug, not a verdict
        crashed = [line for line in result.problems if CRASHED in line]
        assert not crashed, f"the validator crashed on this input: {crashed}"
        for line in result.problems + result.warnings:
            assert isinstance(line, str) and line.startswith(("spec", "object")) and ": " in line, line
        return result
    assert isinstance(result, validation.Valid)
    schedule = result.schedule
    later = schedule.next_after(NOW)
    earlier = schedule.prev_before(NOW)
    assert later is None or later > NOW
    assert earlier is None or earlier < NOW
    if not isinstance(schedule, OneShot):
        assert later is not None, f"accepted {schedule!r} never fires"
        assert (
            0 <= jitter_offset("u-1", later, result.spec.jitter_seconds) <= max(result.spec.jitter_seconds, 0)
        )
    assert schedule.count_between(NOW, NOW + timedelta(days=1)) >= 0
    return result


@FUZZ
@given(json_values)
def test_arbitrary_json_as_the_spec(spec: Any) -> None:
    assert_handled(wrap(spec))


@FUZZ
@given(specs, st.sampled_from([KNOWN, None]))
def test_hostile_field_values(spec: dict[str, Any], known: frozenset[str] | None) -> None:
    assert_handled(wrap(spec), known)


@settings(FUZZ, max_examples=1500)
@given(schedules, zones, st.one_of(instants, st.none()))
def test_schedules_from_a_grammar(schedule: str, zone: Any, creation: Any) -> None:
    spec = {"schedule": schedule, "timeZone": zone, "job": {"handler": {"name": "sundial.noop"}}}
    assert_handled(wrap(spec, creation))


@settings(FUZZ, max_examples=300)
@given(
    st.integers(0, 3000),
    st.sampled_from(["context", "job", "retry", "schedule", "metadata"]),
    scalars,
    st.lists(st.sampled_from(["schedule", "job", "timeZone", "spec", "metadata"]), max_size=3),
)
def test_deep_and_incomplete_objects(depth: int, where: str, leaf: Any, missing: list[str]) -> None:
    spec: dict[str, Any] = {
        "schedule": "@every 1s",
        "timeZone": "UTC",
        "job": {"handler": {"name": "sundial.noop"}},
    }
    obj = wrap(spec)
    if where == "metadata":
        obj["metadata"] = deep(depth, leaf, "creationTimestamp")
    else:
        spec[where] = deep(depth, leaf, "a")
    for key in missing:
        (obj if key in ("spec", "metadata") else spec).pop(key, None)
    assert_handled(obj)


def test_the_fuzzers_reach_both_outcomes() -> None:
    """Guard against strategies that only ever produce rejections (which would test little)."""
    accepted = assert_handled(
        wrap(
            {
                "schedule": "0 2 * * *",
                "timeZone": "Europe/Berlin",
                "job": {"handler": {"name": "sundial.noop"}},
            }
        )
    )
    assert isinstance(accepted, validation.Valid)
    seen: dict[bool, int] = {True: 0, False: 0}

    @settings(FUZZ, max_examples=300)
    @given(schedules)
    def count(schedule: str) -> None:
        result = assert_handled(wrap({"schedule": schedule, "job": {"handler": {"name": "sundial.noop"}}}))
        seen[isinstance(result, validation.Valid)] += 1

    count()
    assert seen[True] > 10 and seen[False] > 10, seen


class _Exploding(dict[str, Any]):
    """An object whose every lookup raises: stands in for any input that crashes the validator."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("boom")


def test_a_validator_crash_fails_the_property() -> None:
    """The catch-all rejection of a crashing validator is caught by ``assert_handled``, so no fuzz
    input can pass by crashing the validator."""
    result = validation.validate_object(_Exploding(wrap({})), known_handlers=KNOWN, now=NOW)
    assert isinstance(result, validation.Invalid) and CRASHED in result.problems[0], result
    with pytest.raises(AssertionError, match="the validator crashed"):
        assert_handled(_Exploding(wrap({})))
