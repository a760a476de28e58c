"""The run history against both real backends: every test runs on SQLite and on PostgreSQL.

Each test gets its own empty database (a SQLite file, or a fresh PostgreSQL database) and must leave
no connection behind: the fixtures fail the test if one is still open when it ends.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sundial.store import (
    NewRun,
    RunStore,
    RunUpdate,
    SchemaError,
    check_schema,
    current_revision,
    head_revision,
    tables,
    upgrade,
)

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 30, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database per test; PostgreSQL is started (once per session) only for its half."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/runs.db"
        return
    server = sa.make_url(request.getfixturevalue("postgres_url"))
    name = f"sundial_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            # A closed connection's backend exits asynchronously: allow it a moment to go.
            for _ in range(40):
                left = conn.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :name"), {"name": name}
                ).scalar_one()
                if left == 0:
                    break
                time.sleep(0.05)
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        assert left == 0, f"{left} connection(s) to the test database leaked"
    finally:
        admin.dispose()


@pytest.fixture
def migrated_url(store_url: str) -> str:
    upgrade(store_url)
    return store_url


@pytest.fixture
def store(migrated_url: str) -> Iterator[RunStore]:
    runs = RunStore(migrated_url)
    yield runs
    assert runs.engine.pool.checkedout() == 0, "a connection was not returned to the pool"  # type: ignore[attr-defined]
    runs.close()


def new_run(
    slot: dt.datetime = T0,
    *,
    uid: str = "uid-1",
    attempt: int = 1,
    trigger: str = "Schedule",
    status: str = "Pending",
    name: str = "nightly",
    **extra: object,
) -> NewRun:
    return NewRun(
        id=uuid.uuid4(),
        config_uid=uid,
        namespace="team-a",
        name=name,
        generation=1,
        scheduled_for=slot,
        trigger=trigger,
        attempt=attempt,
        status=status,
        **extra,  # type: ignore[arg-type]
    )


def minutes(n: int) -> dt.timedelta:
    return dt.timedelta(minutes=n)


# --- migrations --------------------------------------------------------------------------------------


def test_check_schema_fails_before_migrate_and_passes_after(store_url: str) -> None:
    head = head_revision()
    with pytest.raises(SchemaError) as err:
        check_schema(store_url)
    assert (
        str(err.value)
        == f"database schema at revision <empty>, this sundial needs {head}: run `sundial migrate`"
    )
    assert current_revision(store_url) is None

    assert upgrade(store_url) == head
    assert current_revision(store_url) == head
    check_schema(store_url)
    assert upgrade(store_url) == head  # idempotent: every replica may run it at start-up


def test_check_schema_names_an_unknown_revision(migrated_url: str) -> None:
    engine = sa.create_engine(migrated_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {tables.VERSION_TABLE} SET version_num = 'future9'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaError, match="revision future9, which this sundial does not know"):
        check_schema(migrated_url)


def test_migrations_create_exactly_the_tables_of_the_code(migrated_url: str) -> None:
    engine = sa.create_engine(migrated_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": tables.VERSION_TABLE, "compare_type": True}
            )
            assert compare_metadata(context, tables.metadata) == []
    finally:
        engine.dispose()


# --- claiming ----------------------------------------------------------------------------------------


def test_claim_is_a_fence_per_slot(store: RunStore) -> None:
    first, second = new_run(), new_run()
    assert store.claim([first]) == {first.id}
    assert store.claim([second]) == set()
    assert store.claim([first]) == set()  # the same id again is "not claimed", not an error
    assert store.count_runs(config_uid="uid-1") == 1
    assert store.get_run(second.id) is None


def test_a_slot_twice_in_one_batch_is_recorded_once(store: RunStore) -> None:
    a, b, other = new_run(), new_run(), new_run(T0 + minutes(1))
    claimed = store.claim([a, b, other])
    assert len(claimed & {a.id, b.id}) == 1
    assert other.id in claimed
    assert store.count_runs() == 2


def test_attempts_and_configs_are_different_slots(store: RunStore) -> None:
    runs = [new_run(attempt=1), new_run(attempt=2, trigger="Retry"), new_run(uid="uid-2")]
    assert store.claim(runs) == {r.id for r in runs}


def test_racing_replicas_record_each_slot_exactly_once(migrated_url: str) -> None:
    slots = [T0 + minutes(i) for i in range(200)]
    replicas = [RunStore(migrated_url), RunStore(migrated_url)]
    start = threading.Barrier(len(replicas))

    def race(store: RunStore, reverse: bool) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
        batch = [new_run(slot, replica=f"r{reverse}") for slot in (reversed(slots) if reverse else slots)]
        start.wait()
        return store.claim(batch), {r.id for r in batch}

    try:
        with concurrent.futures.ThreadPoolExecutor(len(replicas)) as pool:
            results = list(pool.map(race, replicas, [False, True]))
        (won_a, ids_a), (won_b, ids_b) = results
        assert won_a <= ids_a and won_b <= ids_b
        assert len(won_a) + len(won_b) == 200
        assert replicas[0].count_runs(config_uid="uid-1") == 200
        recorded = {r.id for r in replicas[0].runs("team-a", "nightly", limit=1000)}
        assert recorded == won_a | won_b
    finally:
        for replica in replicas:
            replica.close()


def test_claim_of_thousands_in_one_call(store: RunStore) -> None:
    batch = [new_run(T0 + dt.timedelta(seconds=i), uid=f"uid-{i % 7}") for i in range(2_000)]
    assert store.claim(batch) == {r.id for r in batch}
    assert store.count_runs() == 2_000
    late = new_run(T0 - minutes(1))
    assert store.claim([*batch[:1_000], late]) == {late.id}
    assert store.count_runs() == 2_001


def test_existing_slots(store: RunStore) -> None:
    store.claim([new_run(T0), new_run(T0, attempt=2), new_run(T0, uid="uid-2")])
    asked = [("uid-1", T0, 1), ("uid-1", T0, 3), ("uid-2", T0, 1), ("uid-2", T0 + minutes(1), 1)]
    assert store.existing_slots(asked) == {("uid-1", T0, 1), ("uid-2", T0, 1)}
    assert store.existing_slots([]) == set()


def test_claims_given_back_free_the_slot_but_started_runs_stay(store: RunStore) -> None:
    ahead, started = new_run(T0), new_run(T0 + minutes(1))
    store.claim([ahead, started])
    assert store.mark_started([(started.id, T0 + minutes(1))]) == 1
    assert store.release_claims([ahead.id, started.id]) == 1
    assert store.get_run(ahead.id) is None
    running = store.get_run(started.id)
    assert running is not None and running.status == "Running"
    assert store.last_slots(["uid-1"]) == {"uid-1": T0 + minutes(1)}
    again = new_run(T0)
    assert store.claim([again]) == {again.id}, "a given-back slot can be claimed again"


def test_adopting_a_dead_replicas_pending_run_happens_once(store: RunStore) -> None:
    pending, started = new_run(T0, replica="a"), new_run(T0 + minutes(1), replica="a")
    store.claim([pending, started])
    store.mark_started([(started.id, T0 + minutes(1))])
    assert store.adopt(pending.id, "a", "b")
    assert not store.adopt(pending.id, "a", "c"), "already adopted by b"
    assert not store.adopt(started.id, "a", "b"), "started runs are not adopted"
    adopted = store.get_run(pending.id)
    assert adopted is not None and adopted.replica == "b" and adopted.status == "Pending"


def test_the_start_fence_lets_only_the_rows_owner_start_a_claim(store: RunStore) -> None:
    """A claim adopted by b (a looked dead) is b's to start: a's start fence refuses it."""
    mine, adopted, other = (
        new_run(T0, replica="a"),
        new_run(T0, uid="uid-2", replica="a"),
        new_run(T0, uid="uid-3", replica="b"),
    )
    store.claim([mine, adopted, other])
    assert store.adopt(adopted.id, "a", "b")
    at = T0 + minutes(1)
    assert store.start([mine.id, adopted.id, other.id], "a", at) == {mine.id}
    assert store.start([mine.id], "a", at) == set(), "started once"
    assert store.start([adopted.id, other.id], "b", at) == {adopted.id, other.id}
    rows = {r.id: r for r in (store.get_run(i) for i in (mine.id, adopted.id, other.id)) if r}
    assert {(r.status, r.replica, r.started_at) for r in rows.values()} == {
        ("Running", "a", at),
        ("Running", "b", at),
    }


# --- manual triggers ---------------------------------------------------------------------------------


def test_manual_trigger_fires_once_per_value_even_after_restart(store: RunStore, migrated_url: str) -> None:
    first = new_run(T0, trigger="Manual", status="Running", started_at=T0)
    assert store.claim_manual("uid-1", "2025-03-30T00:00:00Z", first)
    assert store.get_run(first.id) is not None

    with RunStore(migrated_url) as restarted:
        again = new_run(T0 + minutes(1), trigger="Manual")
        assert not restarted.claim_manual("uid-1", "2025-03-30T00:00:00Z", again)
        assert restarted.get_run(again.id) is None
        other = new_run(T0 + minutes(2), trigger="Manual")
        assert restarted.claim_manual("uid-1", "second", other)

    assert store.claim_manual("uid-2", "second", new_run(T0, uid="uid-2", trigger="Manual"))
    assert store.count_runs(trigger="Manual") == 3


def test_manual_trigger_with_a_huge_value(store: RunStore) -> None:
    value = "x" * 100_000
    assert store.claim_manual("uid-1", value, new_run(T0, trigger="Manual"))
    assert not store.claim_manual("uid-1", value, new_run(T0 + minutes(1), trigger="Manual"))
    assert store.claim_manual("uid-1", value + "y", new_run(T0 + minutes(2), trigger="Manual"))


def test_manual_trigger_on_a_taken_slot_fences_nothing(store: RunStore) -> None:
    store.claim([new_run(T0)])
    with pytest.raises(sa.exc.IntegrityError):
        store.claim_manual("uid-1", "v1", new_run(T0, trigger="Manual"))
    assert store.claim_manual("uid-1", "v1", new_run(T0 + minutes(1), trigger="Manual"))


# --- outcomes ----------------------------------------------------------------------------------------


def test_finish_writes_outcomes_in_one_batch(store: RunStore) -> None:
    runs = [new_run(T0 + minutes(i), replica="replica-b") for i in range(3)]
    store.claim(runs)
    assert store.mark_started([(r.id, T0 + minutes(5)) for r in runs]) == 3
    done = T0 + minutes(6)
    updates = [
        RunUpdate(runs[0].id, "Succeeded", None, done, 1500, {"rows": 3, "at": T0}, None, [{"msg": "hi"}]),
        RunUpdate(runs[1].id, "Failed", "JobFailed", done, 20, None, "HTTP 500", None),
        RunUpdate(runs[2].id, "TimedOut", "Timeout", done, 60_000, None, "too slow", [], started_at=T0),
    ]
    assert store.finish(updates) == 3

    ok, failed, slow = (store.get_run(r.id) for r in runs)
    assert ok is not None and failed is not None and slow is not None
    assert (ok.status, ok.finished_at, ok.duration_ms, ok.replica) == ("Succeeded", done, 1500, "replica-b")
    assert ok.result == {"rows": 3, "at": "2025-03-30 00:00:00+00:00"}  # kept as text, not lost
    assert ok.logs == [{"msg": "hi"}]
    assert ok.started_at == T0 + minutes(5)
    assert (failed.status, failed.reason, failed.error, failed.result, failed.logs) == (
        "Failed",
        "JobFailed",
        "HTTP 500",
        None,
        [],
    )
    assert slow.started_at == T0

    late = RunUpdate(runs[1].id, "Succeeded", None, done, 1, None, None, None)
    assert store.finish([late]) == 0  # the first final status wins
    assert store.get_run(runs[1].id).status == "Failed"  # type: ignore[union-attr]
    assert store.unfinished() == []


def test_unfinished_runs_by_replica(store: RunStore) -> None:
    mine = new_run(T0, status="Running", replica="a", started_at=T0)
    theirs = new_run(T0 + minutes(1), replica="b")
    done = new_run(T0 + minutes(2), status="Skipped", reason="Missed", replica="a")
    store.claim([mine, theirs, done])
    assert [r.id for r in store.unfinished()] == [mine.id, theirs.id]
    assert [r.id for r in store.unfinished(replica="a")] == [mine.id]
    assert store.mark_started([(i, T0 + minutes(3)) for i in (mine.id, theirs.id, done.id)]) == 1


# --- reading -----------------------------------------------------------------------------------------


def test_history_is_newest_slot_then_attempt_first(store: RunStore) -> None:
    runs = [
        new_run(T0, attempt=1),
        new_run(T0 + minutes(2), attempt=1),
        new_run(T0, attempt=2, trigger="Retry"),
        new_run(T0 + minutes(1), attempt=1, trigger="Manual"),
        new_run(T0 + minutes(9), name="other"),
    ]
    store.claim(runs)
    history = store.runs("team-a", "nightly")
    assert [(r.scheduled_for, r.attempt) for r in history] == [
        (T0 + minutes(2), 1),
        (T0 + minutes(1), 1),
        (T0, 2),
        (T0, 1),
    ]
    assert [r.id for r in store.runs("team-a", "nightly", limit=2)] == [runs[1].id, runs[3].id]
    assert store.runs("team-b", "nightly") == []


def test_instants_come_back_as_aware_utc(store: RunStore) -> None:
    berlin = dt.timezone(dt.timedelta(hours=2))
    slot = dt.datetime(2025, 3, 30, 3, 0, 0, 123456, tzinfo=berlin)
    run = new_run(slot, started_at=slot)
    store.claim([run])
    record = store.get_run(run.id)
    assert record is not None
    for value in (record.scheduled_for, record.started_at):
        assert value == slot
        assert value is not None and value.tzinfo == UTC
        assert value.microsecond == 123456
    last = store.last_slots(["uid-1"])["uid-1"]
    assert last == slot and last.tzinfo == UTC
    assert store.existing_slots([("uid-1", slot, 1)]) == {("uid-1", slot, 1)}
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        store.claim([new_run(dt.datetime(2025, 1, 1))])


def test_last_slot_counts_scheduler_runs_only(store: RunStore) -> None:
    assert store.last_slots(["uid-1"]) == {}
    store.claim(
        [
            new_run(T0, trigger="Schedule"),
            new_run(T0 + minutes(1), trigger="CatchUp", status="Skipped", reason="Missed"),
            new_run(T0 + minutes(1), trigger="Retry", attempt=2),
            new_run(T0 + minutes(5), trigger="Manual"),
            new_run(T0 + minutes(3), uid="uid-2"),
        ]
    )
    assert store.last_slots(["uid-1", "uid-2", "uid-3", "uid-1"]) == {
        "uid-1": T0 + minutes(1),
        "uid-2": T0 + minutes(3),
    }
    assert store.last_slots([]) == {}


# --- CronConfigs -------------------------------------------------------------------------------------


def test_deleted_config_keeps_its_history(store: RunStore) -> None:
    store.record_configs([("uid-1", "team-a", "nightly", T0)], [])
    store.record_configs([("uid-1", "team-a", "nightly", T0)], [])
    store.claim([new_run(T0)])
    assert store.mark_deleted("uid-1", T0 + minutes(10))
    assert not store.mark_deleted("uid-1", T0 + minutes(20))  # the first deletion time stays
    assert not store.mark_deleted("uid-unknown", T0)
    store.record_configs([("uid-1", "team-a", "nightly", T0)], [])  # a late event does not revive it

    config = store.get_config("uid-1")
    assert config is not None
    assert (config.namespace, config.name, config.created_at) == ("team-a", "nightly", T0)
    assert config.deleted_at == T0 + minutes(10)
    assert config.deleted_at.tzinfo == UTC
    assert len(store.runs("team-a", "nightly")) == 1
    assert store.get_config("uid-unknown") is None


def test_versions_are_recorded_once_per_generation(store: RunStore) -> None:
    spec = {"schedule": "0 2 * * *", "job": {"http": {"url": "https://example.com/hook"}}}
    store.record_configs([], [("uid-1", 1, spec)], at=T0)
    store.record_configs([], [("uid-1", 1, {"changed": True})], at=T0 + minutes(1))  # kept: the first
    store.record_configs(
        [], [("uid-1", 2, {**spec, "suspend": True}), ("uid-2", 1, spec)], at=T0 + minutes(2)
    )
    versions = store.versions("uid-1")
    assert [(v.generation, v.spec, v.recorded_at) for v in versions] == [
        (1, spec, T0),
        (2, {**spec, "suspend": True}, T0 + minutes(2)),
    ]


def test_store_refuses_other_databases() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        RunStore("mysql://localhost/x")


# --- the `sundial runs` command ----------------------------------------------------------------------


def test_sundial_runs_prints_the_history_newest_first(store: RunStore, migrated_url: str) -> None:
    import subprocess
    import sys
    from pathlib import Path

    first = new_run(T0, replica="replica-a")
    retry = new_run(T0, attempt=2, trigger="Retry", replica="replica-b")
    later = new_run(T0 + minutes(1), replica="replica-a")
    store.claim([first, retry, later])
    store.finish(
        [
            RunUpdate(
                id=first.id,
                status="Failed",
                reason="JobFailed",
                finished_at=T0 + dt.timedelta(seconds=2),
                duration_ms=2000,
                result=None,
                error="asked to fail (attempt 1)",
                logs=None,
                started_at=T0,
            ),
            RunUpdate(
                id=retry.id,
                status="Succeeded",
                reason=None,
                finished_at=T0 + dt.timedelta(seconds=13),
                duration_ms=1000,
                result={"ok": True},
                error=None,
                logs=None,
                started_at=T0 + dt.timedelta(seconds=12),
            ),
        ]
    )
    sundial = Path(sys.executable).parent / "sundial"
    out = subprocess.run(
        [str(sundial), "runs", "nightly", "-n", "team-a", "--database-url", migrated_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].split() == [
        "STATUS",
        "TRIGGER",
        "ATTEMPT",
        "SCHEDULED",
        "STARTED",
        "FINISHED",
        "DURATION",
        "REPLICA",
        "ITEMS",
        "REASON/ERROR",
    ]
    assert all(line.split()[8] == "-" for line in out[1:] if not line.startswith("Pending"))  # no fan-out
    statuses = [line.split()[:3] for line in out[1:]]
    assert statuses == [
        ["Pending", "Schedule", "1"],
        ["Succeeded", "Retry", "2"],
        ["Failed", "Schedule", "1"],
    ]
    assert "2000ms" in out[3] and "asked to fail (attempt 1)" in out[3] and "replica-a" in out[3]
    empty = subprocess.run(
        [str(sundial), "runs", "other", "-n", "team-a", "--database-url", migrated_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "no runs recorded for team-a/other" in empty


def test_finish_records_the_generation_that_ran_when_it_changed(store: RunStore) -> None:
    kept, changed = new_run(T0), new_run(T0 + minutes(1))
    store.claim([kept, changed])
    done = T0 + minutes(2)
    store.finish(
        [
            RunUpdate(kept.id, "Succeeded", None, done, 1, None, None, None),
            RunUpdate(
                changed.id, "Succeeded", None, done, 1, None, None, None, generation=kept.generation + 1
            ),
        ]
    )
    assert store.get_run(kept.id).generation == kept.generation  # type: ignore[union-attr]
    assert store.get_run(changed.id).generation == kept.generation + 1  # type: ignore[union-attr]
