"""The pure parts of the ``fanout`` job type: item keys, templates, JSON values, the model, the
in-process queue, the job type's validation findings, and ``sundial validate`` on fan-out manifests.

Nothing here needs a server; the workers against real PostgreSQL and Redis are in
``tests/integration/test_fanout_workers.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sundial import cli, validation
from sundial.jobs import fanoutqueue, fanoutsource, registry, templating
from sundial.jobs.base import Finding
from sundial.jobs.fanout import FanoutJobType
from sundial.jobs.fanoutqueue import Delivery, LocalQueue, RunMeta
from sundial.jobs.itemkeys import MAX_KEY, BadItem, canonical, key_of
from sundial.jobs.templating import TemplateFailed, render, render_text
from sundial.models.spec import FanoutJob, ItemRetryPolicy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests" / "examples" / "fanout-digest.yaml"
NOW = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.UTC)

HANDLER_SOURCE = {"handler": {"name": "src.users"}}
HANDLER_EACH = {"handler": {"name": "each.send"}}


def fanout(**fields: Any) -> dict[str, Any]:
    """A valid ``spec.job.fanout``, with fields replaced (``None`` removes one)."""
    body: dict[str, Any] = {"source": HANDLER_SOURCE, "each": HANDLER_EACH}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def manifest(name: str = "fan", **job: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sundial.io/v1alpha1",
        "kind": "CronConfig",
        "metadata": {"name": name, "namespace": "team-a", "creationTimestamp": "2030-05-01T00:00:00Z"},
        "spec": {"schedule": "@hourly", "job": {"fanout": fanout(**job)}},
    }


# ------------------------------------------------------------------------------------- item keys
def test_the_id_field_is_the_key_by_default() -> None:
    assert key_of({"id": "user-1", "email": "a@example.com"}, None) == "user-1"
    assert key_of({"id": 42}, None) == "42"


def test_item_key_names_the_field() -> None:
    item = {"id": "ignored", "customerId": "c-7"}
    assert key_of(item, "customerId") == "c-7"
    assert key_of({"n": 0}, "n") == "0"


def test_without_an_id_the_key_is_the_hash_of_the_canonical_json() -> None:
    a = {"b": 1, "a": [1, 2, {"y": None, "x": "é"}]}
    b = {"a": [1, 2, {"x": "é", "y": None}], "b": 1}  # same item, other order
    key = key_of(a, None)
    assert key == key_of(b, None)
    assert key.startswith("sha256:") and len(key) == len("sha256:") + 64
    assert key != key_of({**a, "b": 2}, None)
    assert canonical(a) == canonical(b) == '{"a":[1,2,{"x":"é","y":null}],"b":1}'


def test_an_id_that_is_not_a_string_or_an_integer_falls_back_to_the_hash() -> None:
    for value in (True, 1.5, None, [1], {"x": 1}):
        assert key_of({"id": value}, None).startswith("sha256:"), value


@pytest.mark.parametrize(
    ("item", "shown"),
    [({"id": 1}, "it is missing"), ({"k": True}, "it is a bool"), ({"k": 1.5}, "it is a float")],
)
def test_an_unusable_item_key_fails_naming_the_field(item: dict[str, Any], shown: str) -> None:
    with pytest.raises(BadItem) as err:
        key_of(item, "k")
    assert str(err.value) == f"itemKey 'k' must be a string or an integer in every item; {shown}"


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(BadItem, match="itemKey 'id' is empty"):
        key_of({"id": ""}, None)
    with pytest.raises(BadItem, match="itemKey 'sku' is empty"):
        key_of({"sku": ""}, "sku")


def test_items_must_be_objects() -> None:
    for item in ([1, 2], "a", 3, None):
        with pytest.raises(BadItem, match="items must be JSON objects"):
            key_of(item, None)


def test_long_keys_are_stored_as_their_hash() -> None:
    assert key_of({"id": "x" * MAX_KEY}, None) == "x" * MAX_KEY
    long = key_of({"id": "x" * (MAX_KEY + 1)}, None)
    assert long.startswith("sha256:") and len(long) <= MAX_KEY
    assert long == key_of({"id": "x" * (MAX_KEY + 1)}, None)
    assert long != key_of({"id": "x" * (MAX_KEY + 2)}, None)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=600),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.one_of(st.just("id"), st.text(max_size=8)), json_values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(json_objects)
def test_keys_are_deterministic_bounded_and_order_independent(item: dict[str, Any]) -> None:
    try:
        key = key_of(item, None)
    except BadItem as err:  # only an empty id is refused
        assert item.get("id") == "" and "is empty" in str(err)
        return
    assert 0 < len(key) <= MAX_KEY
    assert key == key_of(json.loads(json.dumps(item)), None)
    assert key == key_of(dict(reversed(list(item.items()))), None)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(min_size=1, max_size=2000), st.integers()), json_objects)
def test_a_custom_item_key_is_the_field_or_its_hash(value: str | int, rest: dict[str, Any]) -> None:
    key = key_of({**rest, "ref": value}, "ref")
    text = str(value)
    assert key == (text if len(text) <= MAX_KEY else key_of({"id": text}, None))
    assert len(key) <= MAX_KEY


# ------------------------------------------------------------------------------------- templates
VALUES: dict[str, Any] = {
    "item": {"id": 7, "email": "a@example.com", "address": {"city": "Berlin"}, "tags": ["x", "y"]},
    "run": {"id": "r-1", "namespace": "team-a", "name": "fan", "scheduledFor": "2030-05-01T12:00:00+00:00"},
    "context": {"plan": "pro"},
}


def test_templates_render_item_run_and_context() -> None:
    where = "spec.job.fanout.each.http.url"
    assert render_text("https://api/charge/{{ item.id }}", VALUES, where) == "https://api/charge/7"
    assert render_text("{{ item.address.city }}/{{ item.tags[1] }}", VALUES, where) == "Berlin/y"
    assert render_text("{{ run.name }}-{{ context.plan }}", VALUES, where) == "fan-pro"
    assert render_text("{{ run.scheduledFor[:10] }}", VALUES, where) == "2030-05-01"
    assert render_text("{{ item.email | upper }}", VALUES, where) == "A@EXAMPLE.COM"
    assert render_text("no braces here", VALUES, where) == "no braces here"


def test_an_undefined_field_fails_naming_the_spec_field_and_the_name() -> None:
    with pytest.raises(TemplateFailed) as err:
        render_text("https://api/{{ item.emial }}", VALUES, "spec.job.fanout.each.http.url")
    message = str(err.value)
    assert message.startswith("spec.job.fanout.each.http.url: ")
    assert "'emial'" in message
    with pytest.raises(TemplateFailed, match=r"^spec\.x: 'missing' is undefined$"):
        render_text("{{ missing }}", VALUES, "spec.x")
    with pytest.raises(TemplateFailed, match="'city2'"):
        render_text("{{ item.address.city2 }}", VALUES, "spec.x")


@pytest.mark.parametrize(
    "text",
    [
        "{{ item.__class__.__mro__ }}",
        "{{ ''.__class__.__subclasses__() }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ item.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ item.pop('id') }}",
        "{{ item.update({'id': 8}) }}",
        "{{ item.tags.append('z') }}",
        "{{ run.__init__ }}",
    ],
)
def test_the_sandbox_refuses_escapes(text: str) -> None:
    before = json.dumps(VALUES, sort_keys=True)
    with pytest.raises(TemplateFailed) as err:
        render_text(text, VALUES, "spec.job.fanout.each.http.url")
    assert str(err.value).startswith("spec.job.fanout.each.http.url: ")
    assert json.dumps(VALUES, sort_keys=True) == before  # nothing changed the data


def test_bodies_render_every_string_inside_and_name_the_path() -> None:
    body = {
        "email": "{{ item.email }}",
        "count": 3,
        "flag": True,
        "nothing": None,
        "nested": {"city": "{{ item.address.city }}", "list": ["{{ context.plan }}", 1, "literal"]},
    }
    assert render(body, VALUES, "spec.job.fanout.each.http.body") == {
        "email": "a@example.com",
        "count": 3,
        "flag": True,
        "nothing": None,
        "nested": {"city": "Berlin", "list": ["pro", 1, "literal"]},
    }
    assert render("{{ item.id }}", VALUES, "b") == "7"
    with pytest.raises(TemplateFailed, match=r"^spec\.b\.nested\.list\[1\]: "):
        render({"nested": {"list": ["ok", "{{ item.nope }}"]}}, VALUES, "spec.b")


def test_template_syntax_errors_are_found_before_any_item() -> None:
    assert templating.check("https://api/{{ item.id }}", "spec.u") is None
    problem = templating.check("https://api/{{ item.id ", "spec.u")
    assert problem is not None and problem.startswith("spec.u: template syntax error: ")
    assert problem.endswith("(line 1)")
    with pytest.raises(TemplateFailed, match=r"^spec\.u: TemplateSyntaxError: "):
        render_text("{% for %}", VALUES, "spec.u")


# ------------------------------------------------------------------------------- source values
def test_database_values_become_json() -> None:
    row = {
        "at": dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.UTC),
        "day": dt.date(2030, 5, 1),
        "time": dt.time(6, 30),
        "whole": decimal.Decimal("12.000"),
        "part": decimal.Decimal("12.5"),
        "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "blob": b"\x00\xff",
        "view": memoryview(b"ab"),
        "tuple": (1, "a"),
        "nested": {1: [decimal.Decimal("2")]},
        "plain": ["s", 1, 1.5, True, None],
        "other": complex(1, 2),
    }
    out = fanoutsource.jsonable(row)
    assert out == {
        "at": "2030-05-01T12:00:00+00:00",
        "day": "2030-05-01",
        "time": "06:30:00",
        "whole": 12,
        "part": 12.5,
        "uid": "12345678-1234-5678-1234-567812345678",
        "blob": "00ff",
        "view": "6162",
        "tuple": [1, "a"],
        "nested": {"1": [2]},
        "plain": ["s", 1, 1.5, True, None],
        "other": "(1+2j)",
    }
    assert isinstance(out["whole"], int)
    json.dumps(out)  # an item the history can store


# ---------------------------------------------------------------------------------------- model
def test_the_model_defaults() -> None:
    job = FanoutJob.model_validate(fanout())
    assert job.item_key is None
    assert job.parallelism == 10
    assert job.item_retry == ItemRetryPolicy()
    assert (job.item_retry.limit, job.item_retry.backoff_seconds, job.item_retry.max_backoff_seconds) == (
        3,
        10,
        600,
    )
    assert [job.item_retry.delay(n) for n in (1, 2, 3)] == [10, 20, 40]
    dumped = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["itemRetry"] == {"limit": 3, "backoffSeconds": 10, "maxBackoffSeconds": 600}


def test_the_model_reads_camel_case_fields() -> None:
    job = FanoutJob.model_validate(
        fanout(
            itemKey="customerId",
            parallelism=50,
            itemRetry={"limit": 0, "backoffSeconds": 2, "maxBackoffSeconds": 8},
            source={"http": {"url": "https://crm/api", "method": "GET", "itemsPath": "$.customers"}},
            each={"http": {"url": "https://mail/{{ item.customerId }}", "body": {"to": "{{ item.email }}"}}},
        )
    )
    assert job.item_key == "customerId" and job.parallelism == 50 and job.item_retry.limit == 0
    assert job.source.http is not None and job.source.http.items_path == "$.customers"
    assert job.each.http is not None and str(job.each.http.method) == "POST"


def test_an_http_source_reads_the_whole_body_by_default() -> None:
    job = FanoutJob.model_validate(fanout(source={"http": {"url": "https://crm/api"}}))
    assert job.source.http is not None and job.source.http.items_path == "$"


def _errors(fields: dict[str, Any]) -> list[str]:
    with pytest.raises(pydantic.ValidationError) as err:
        FanoutJob.model_validate(fields)
    return [e["msg"] for e in err.value.errors()]


@pytest.mark.parametrize(
    "source",
    [{}, {"handler": {"name": "a"}, "http": {"url": "https://x"}}],
    ids=["none", "two"],
)
def test_exactly_one_source(source: dict[str, Any]) -> None:
    assert _errors(fanout(source=source)) == ["exactly one of sql, http or handler must be set"]


@pytest.mark.parametrize(
    "each", [{}, {"handler": {"name": "a"}, "http": {"url": "https://x"}}], ids=["none", "two"]
)
def test_exactly_one_each(each: dict[str, Any]) -> None:
    assert _errors(fanout(each=each)) == ["exactly one of handler or http must be set"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"parallelism": 0}, "Input should be greater than or equal to 1"),
        ({"parallelism": 1001}, "Input should be less than or equal to 1000"),
        ({"parallelism": "5"}, "Input should be a valid integer"),
        ({"itemKey": ""}, "String should have at least 1 character"),
        ({"itemRetry": {"limit": 101}}, "Input should be less than or equal to 100"),
        (
            {"itemRetry": {"backoffSeconds": 60, "maxBackoffSeconds": 30}},
            "backoffSeconds must not exceed maxBackoffSeconds",
        ),
        ({"source": None}, "Field required"),
        ({"each": None}, "Field required"),
    ],
)
def test_model_limits(fields: dict[str, Any], message: str) -> None:
    assert _errors(fanout(**fields)) == [message]


# --------------------------------------------------------------------------------- local queue
def meta(parallelism: int = 3) -> RunMeta:
    return RunMeta(
        run={"id": "r"},
        each={"handler": {"name": "each.send"}},
        parallelism=parallelism,
        retry={"limit": 3},
        context={},
        deadline=time.time() + 60,
    )


async def test_the_local_queue_hands_out_no_more_than_parallelism() -> None:
    q = LocalQueue()
    await q.create("r", meta(3))
    await q.add("r", [f"k{i}" for i in range(10)])
    assert await q.counts("r") == (10, 0, 0)
    first = await q.read("r", "a", 3, 2)
    assert [d.key for d in first] == ["k0", "k1"] and not any(d.takeover for d in first)
    second = await q.read("r", "b", 3, 10)  # another worker: the limit is the run's, not the worker's
    assert [d.key for d in second] == ["k2"]
    assert await q.read("r", "c", 3, 10) == []
    assert await q.counts("r") == (7, 3, 0)
    await q.ack("r", [first[0].entry])
    assert [d.key for d in await q.read("r", "c", 3, 10)] == ["k3"]
    assert len({d.entry for d in [*first, *second]}) == 3  # every entry has its own id


async def test_acknowledged_entries_are_gone() -> None:
    q = LocalQueue()
    await q.create("r", meta(5))
    await q.add("r", ["a", "b"])
    got = await q.read("r", "w", 5, 5)
    await q.ack("r", [d.entry for d in got])
    await q.ack("r", [d.entry for d in got])  # twice is harmless
    assert await q.counts("r") == (0, 0, 0)
    assert await q.read("r", "w", 5, 5) == []


async def test_a_retry_waits_until_it_is_due() -> None:
    q = LocalQueue()
    await q.create("r", meta(2))
    await q.add("r", ["a"])
    [d] = await q.read("r", "w", 2, 2)
    now = time.time()
    await q.later("r", d.entry, d.key, now + 30)
    assert await q.counts("r") == (0, 0, 1)  # out of hand: it no longer counts against parallelism
    assert await q.promote("r", now + 29) == 0
    assert await q.read("r", "w", 2, 2) == []
    assert await q.promote("r", now + 30) == 1
    [again] = await q.read("r", "w", 2, 2)
    assert again.key == "a" and again.entry != d.entry and not again.takeover
    assert await q.counts("r") == (0, 1, 0)


async def test_later_of_an_entry_not_in_hand_does_nothing() -> None:
    q = LocalQueue()
    await q.create("r", meta(2))
    await q.later("r", "99-0", "ghost", time.time())
    assert await q.counts("r") == (0, 0, 0)
    assert await q.promote("missing", time.time()) == 0


async def test_idle_entries_are_claimed_again_and_touched_ones_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fanoutqueue, "CLAIM_IDLE_MS", 50)
    q = LocalQueue()
    await q.create("r", meta(4))
    await q.add("r", ["dead", "alive"])
    dead, alive = await q.read("r", "w1", 4, 2)
    assert await q.reclaim("r", "w2", 10) == []  # not idle yet
    await asyncio.sleep(0.1)  # both idle now
    await q.touch("r", "w1", [alive.entry])  # w1 is alive and says so
    claimed = await q.reclaim("r", "w2", 10)
    assert claimed == [Delivery(dead.entry, "dead", True)]  # the same entry, now a takeover
    assert await q.reclaim("r", "w3", 10) == []  # just claimed: w2 holds it
    assert await q.counts("r") == (0, 2, 0)  # reclaiming moves entries, never adds any


async def test_reclaim_respects_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanoutqueue, "CLAIM_IDLE_MS", 0)
    q = LocalQueue()
    await q.create("r", meta(5))
    await q.add("r", ["a", "b", "c"])
    await q.read("r", "w1", 5, 5)
    await asyncio.sleep(0.01)
    assert len(await q.reclaim("r", "w2", 2)) == 2


async def test_takeover_entries_keep_their_mark() -> None:
    q = LocalQueue()
    await q.create("r", meta(5))
    await q.add("r", ["orphan"], takeover=True)
    [d] = await q.read("r", "w", 5, 5)
    assert d.takeover


async def test_a_stopped_run_hands_out_nothing_and_a_removed_one_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fanoutqueue, "CLAIM_IDLE_MS", 0)
    q = LocalQueue()
    await q.create("r", meta(5))
    await q.create("other", meta(5))
    await q.add("r", ["a", "b"])
    [held] = await q.read("r", "w", 5, 1)
    await q.stop("r")
    assert set(await q.active()) == {"other"}
    assert await q.read("r", "w", 5, 5) == []
    assert await q.reclaim("r", "w2", 5) == []
    await q.ack("r", [held.entry])  # an item in hand may still finish
    assert await q.counts("r") == (1, 0, 0)
    await q.create("r", meta(5))  # resumed: announced again
    assert set(await q.active()) == {"r", "other"}
    assert [d.key for d in await q.read("r", "w", 5, 5)] == ["b"]
    await q.remove("r")
    assert await q.counts("r") is None
    await q.add("r", ["c"])  # entries of a run that is gone are dropped
    assert await q.counts("r") is None
    assert await q.read("r", "w", 5, 5) == []


async def test_create_is_idempotent_and_updates_the_meta() -> None:
    q = LocalQueue()
    await q.create("r", meta(2))
    await q.add("r", ["a"])
    await q.create("r", meta(7))
    assert (await q.active())["r"].parallelism == 7
    assert await q.counts("r") == (1, 0, 0)


# ----------------------------------------------------------------------------- job type findings
def findings(job: dict[str, Any], known: set[str] | None = None) -> list[Finding]:
    spec = FanoutJob.model_validate(job)
    return list(FanoutJobType().check(spec, known_handlers=known))


def test_unknown_handler_names_are_findings() -> None:
    found = findings(fanout(), known={"sundial.noop"})
    assert found == [
        Finding(
            "spec.job.fanout.source.handler.name",
            "no handler named 'src.users' is registered (known: sundial.noop)",
        ),
        Finding(
            "spec.job.fanout.each.handler.name",
            "no handler named 'each.send' is registered (known: sundial.noop)",
        ),
    ]
    assert findings(fanout(), known={"src.users", "each.send"}) == []
    assert findings(fanout(), known=None) == []  # the registry is not known: nothing to say
    [empty] = findings(fanout(), known={"src.users"})
    assert empty.message == "no handler named 'each.send' is registered (known: src.users)"


def test_template_syntax_errors_are_findings() -> None:
    each = {
        "http": {
            "url": "https://api/charge/{{ item.id ",
            "headers": {"X-Ok": "{{ item.id }}", "X-Bad": "{% if %}"},
        }
    }
    found = findings(fanout(each=each))
    assert [f.path for f in found] == [
        "spec.job.fanout.each.http.url",
        "spec.job.fanout.each.http.headers.X-Bad",
    ]
    assert all(f.message.startswith("template syntax error: ") and not f.warning for f in found)
    good = {"http": {"url": "https://api/charge/{{ item.id }}", "body": {"to": "{{ item.email }}"}}}
    assert findings(fanout(each=good)) == []


@pytest.mark.parametrize(
    "text",
    [
        "{{ 'x' * 10000000000 }}",
        "{{ 10000000000 * 'x' }}",
        "{{ [1] * 100000000 }}",
        "{{ 2 ** 3000000 }}",
        "{{ (10 ** 1000) ** 1000 }}",
        "{{ item.name * 100000000 }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ '%1000000000d' % 1 }}",
        "{{ '{:>1000000000}'.format(1) }}",
        "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
        "{{ range(1000000000)|list }}",
    ],
)
def test_templates_cannot_take_the_operators_memory(text: str) -> None:
    started = time.monotonic()
    assert templating.check(text, "spec.job.fanout.each.http.url") is None  # nothing folded at compile time
    with pytest.raises(TemplateFailed, match="refused by the template sandbox"):
        render_text(text, {"item": {"name": "ab"}}, "spec.job.fanout.each.http.url")
    assert time.monotonic() - started < 1.0


def test_reasonable_arithmetic_still_renders() -> None:
    assert (
        render_text("{{ 'ab' * 3 }}-{{ 2 ** 10 }}-{{ item.n * 2 }}", {"item": {"n": 21}}, "u")
        == "ababab-1024-42"
    )
    values = {"item": {"id": 7, "tags": ["a", "b"]}}
    assert render_text("{{ 'order-1234567 %s' % item.id }}", values, "u") == "order-1234567 7"
    assert render_text("{{ '{}/{:>3}'.format(item.id, 'x') }}", values, "u") == "7/  x"
    assert render_text("{{ item.tags|join(',')|center(7) }}", values, "u") == "  a,b  "
    assert render_text("{% for i in range(3) %}{{ i }}{% endfor %}", values, "u") == "012"


def test_body_templates_and_the_http_and_sql_checks_are_findings() -> None:
    each = {"http": {"url": "http://169.254.169.254/{{ item.id }}", "body": {"to": ["{{ item.email "]}}}
    source = {"sql": {"connectionSecretRef": {"name": "db", "key": "url"}, "query": "  ", "readOnly": True}}
    found = findings(fanout(each=each, source=source))
    assert Finding("spec.job.fanout.each.http.body.to[0]", found[0].message) in found
    assert found[0].message.startswith("template syntax error: ")
    paths = {(f.path, f.warning) for f in found}
    assert ("spec.job.fanout.each.http.url", True) in paths  # link-local: a warning, as for http jobs
    assert ("spec.job.fanout.source.sql.query", False) in paths  # an empty statement


def test_a_whole_run_retry_of_a_fanout_is_a_warning() -> None:
    obj = manifest()
    obj["spec"]["retry"] = {"limit": 2}
    result = validation.validate_object(obj, known_handlers=None, now=NOW)
    assert isinstance(result, validation.Valid)
    assert any(
        w.startswith("spec.retry.limit: a retry of a fan-out run is a new run") for w in result.warnings
    )


# ------------------------------------------------------------------------------------ validation
def test_a_fanout_cronconfig_is_valid() -> None:
    result = validation.validate_object(manifest(), known_handlers={"src.users", "each.send"}, now=NOW)
    assert isinstance(result, validation.Valid) and result.warnings == [], result
    assert result.spec.job.fanout is not None and result.spec.job.fanout.parallelism == 10


@pytest.mark.parametrize(
    ("job", "problem"),
    [
        (
            {"each": {"http": {"url": "https://api/{{ item.id "}}},
            "spec.job.fanout.each.http.url: template syntax error: ",
        ),
        ({"source": {}}, "spec.job.fanout.source: exactly one of sql, http or handler must be set"),
        ({"each": {}}, "spec.job.fanout.each: exactly one of handler or http must be set"),
        ({"parallelism": 0}, "spec.job.fanout.parallelism: "),
        (
            {"source": {"sql": {"connectionSecretRef": {"name": "db", "key": "url"}}}},
            "spec.job.fanout.source.sql: exactly one of query or queryFrom must be set",
        ),
        (
            {"each": {"http": {"url": "ftp://files/{{ item.id }}"}}},
            "spec.job.fanout.each.http.url: ",
        ),
    ],
)
def test_fanout_problems_name_the_field(job: dict[str, Any], problem: str) -> None:
    result = validation.validate_object(manifest(**job), known_handlers=None, now=NOW)
    assert isinstance(result, validation.Invalid), result
    assert any(p.startswith(problem) for p in result.problems), result.problems


def test_sundial_validate_checks_fanout_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SUNDIAL_HANDLERS", raising=False)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(manifest("good")))
    assert cli.main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == ""

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(manifest("bad", each={"http": {"url": "https://api/{{ item.id "}})))
    assert cli.main(["validate", str(bad)]) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(
        f"{bad}: CronConfig team-a/bad: spec.job.fanout.each.http.url: template syntax error: "
    )


def test_sundial_validate_checks_fanout_handler_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUNDIAL_HANDLERS", "sundial.jobs.builtin")
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump(manifest("h")))
    assert cli.main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "spec.job.fanout.source.handler.name: no handler named 'src.users' is registered" in out
    assert "spec.job.fanout.each.handler.name: no handler named 'each.send' is registered" in out


def test_the_example_manifest_is_valid_without_warnings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.load(["sundial.examples"])
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    assert [d["metadata"]["name"] for d in docs] == ["fanout-digest", "fanout-digest-http"]
    for doc in docs:
        result = validation.validate_object(doc, known_handlers=registry.names())
        assert isinstance(result, validation.Valid) and not result.warnings, result
        assert result.spec.job.fanout is not None
    monkeypatch.setenv("SUNDIAL_HANDLERS", "sundial.examples")
    assert cli.main(["validate", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == ""


async def test_the_example_handlers_yield_and_send() -> None:
    """What the example needs of ``sundial.examples``: 20 items in batches, user-07 failing."""
    from sundial.jobs.context import Capture, JobContext, JobFailed, RunInfo

    registry.load(["sundial.examples"])

    async def no_secret(name: str, key: str) -> str:
        raise KeyError(key)

    run = RunInfo("r", "uid", "default", "fanout-digest", 1, NOW, 1, "Schedule")
    context = {"recipients": 20, "sendSeconds": 0, "failItems": ["user-07"]}
    ctx = JobContext(run=run, context=context, capture=Capture(), read_secret=no_secret)
    source = registry.lookup("sundial.digest_recipients")
    each = registry.lookup("sundial.digest_send")
    assert source is not None and each is not None
    batches = list(source(ctx))
    assert [len(b) for b in batches] == [5, 5, 5, 5]
    items = [item for batch in batches for item in batch]
    assert [key_of(item, "id") for item in items] == [f"user-{n:02d}" for n in range(1, 21)]
    for item in items:
        one = JobContext(
            run=run,
            context=context,
            capture=Capture(),
            read_secret=no_secret,
            item=item,
            item_key=key_of(item, "id"),
        )
        if item["id"] == "user-07":
            with pytest.raises(JobFailed, match=re.escape("user-07@example.com")):
                await each(one)
        else:
            assert await each(one) == {"sent": item["email"], "key": item["id"]}
