"""Secret values never reach what sundial records, even when a job hands them straight back.

Each test makes the secret actually flow into what gets recorded (a response body, an error message,
a handler's result and log), then checks two things: the secret is nowhere (the database, the
CronConfig with its status, the Events, the operator log) and ``***`` is there in its place, which
proves the redaction ran rather than that nothing was written.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from sundial.store.records import RunRecord
from tests.integration.conftest import Receiver, StartOperator, runs_of, sundial_env
from tests.support.digest import fingerprint
from tests.support.kube import Kubectl, cronconfig, wait_until
from tests.support.operator import OperatorProcess

pytestmark = pytest.mark.k8s


def create_secret(kubectl: Kubectl, namespace: str) -> str:
    value = f"tok-{uuid.uuid4().hex}"
    kubectl.run("create", "secret", "generic", "api-token", "-n", namespace, f"--from-literal=token={value}")
    return value


def database_text(db: str) -> str:
    """Every row of every table of the run history, as text."""
    engine = sa.create_engine(db)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return "\n".join(
                repr(row) for table in meta.sorted_tables for row in conn.execute(sa.select(table))
            )
    finally:
        engine.dispose()


def assert_nowhere(secret: str, *, db: str, kubectl: Kubectl, namespace: str, op: OperatorProcess) -> None:
    places = {
        "the database": database_text(db),
        "the CronConfigs": kubectl.run("get", "cronconfigs", "-n", namespace, "-o", "json").stdout,
        "the Events": json.dumps(kubectl.events(namespace)),
        "the operator log": op.logs(),
    }
    leaked = [where for where, text in places.items() if secret in text]
    assert not leaked, f"the secret value leaked into {', '.join(leaked)}"


def failed_run(db: str, namespace: str, name: str, contains: str) -> RunRecord | None:
    return next(
        (r for r in runs_of(db, namespace, name) if r.status == "Failed" and contains in (r.error or "")),
        None,
    )


def status_message(kubectl: Kubectl, name: str, namespace: str, contains: str) -> str | None:
    message = str((kubectl.status(name, namespace).get("lastRun") or {}).get("message", ""))
    return message if contains in message else None


def event_message(kubectl: Kubectl, namespace: str, contains: str) -> str | None:
    for event in kubectl.events(namespace):
        if event["reason"] == "RunFailed" and contains in event["message"]:
            return str(event["message"])
    return None


def test_http_secret_echoed_back_is_redacted(
    kubectl: Kubectl,
    namespace: str,
    pg_redis: tuple[str, str],
    operator_for: StartOperator,
    receiver: Receiver,
) -> None:
    """A ``headersFrom`` Secret value that the server echoes back, in a 200 body, in a 500 body and
    in a malformed response (whose parse error becomes the run's error), is recorded as ``***``."""
    db, redis = pg_redis
    secret = create_secret(kubectl, namespace)
    receiver.reply = lambda request: json.dumps({"echo": request["authorization"]}).encode()
    op = operator_for(sundial_env(db, redis, namespace))
    kubectl.apply(
        cronconfig(
            "echoed",
            namespace,
            schedule="* * * * * *",
            timeoutSeconds=5,
            job={
                "http": {
                    "url": receiver.url,
                    "headersFrom": [
                        {"name": "Authorization", "secretKeyRef": {"name": "api-token", "key": "token"}}
                    ],
                }
            },
        )
    )
    ok = wait_until(
        lambda: next((r for r in runs_of(db, namespace, "echoed") if r.status == "Succeeded"), None),
        what="a successful request",
    )
    assert receiver.requests[0]["authorization"] == secret, "the real value is sent"
    assert ok.result["body"] == '{"echo": "***"}'

    receiver.status = 500
    rejected = wait_until(lambda: failed_run(db, namespace, "echoed", "HTTP 500"), what="an HTTP 500 run")
    assert rejected.result["statusCode"] == 500 and rejected.result["body"] == '{"echo": "***"}'

    # a status line aiohttp cannot parse: its error message quotes the line, secret included
    receiver.raw = lambda request: f"HTTP/1.1 2OO {request['authorization']}\r\n\r\n".encode()
    garbled = wait_until(lambda: failed_run(db, namespace, "echoed", "***"), what="a garbled response")
    assert "***" in (garbled.error or "") and "ClientResponseError" in (garbled.error or ""), garbled.error
    wait_until(lambda: status_message(kubectl, "echoed", namespace, "***"), what="lastRun.message with ***")
    wait_until(lambda: event_message(kubectl, namespace, "***"), what="a RunFailed Event with ***")
    assert "***" in op.logs()
    assert_nowhere(secret, db=db, kubectl=kubectl, namespace=namespace, op=op)


def test_handler_secret_is_redacted_from_result_logs_and_errors(
    kubectl: Kubectl, namespace: str, pg_redis: tuple[str, str], operator_for: StartOperator
) -> None:
    """A handler that reads a Secret with ``await ctx.secret(...)``, logs it with ``ctx.capture``,
    returns it and fails with it in the message: every copy is recorded as ``***``."""
    db, redis = pg_redis
    secret = create_secret(kubectl, namespace)
    op = operator_for(sundial_env(db, redis, namespace, SUNDIAL_HANDLERS="tests.handlers_fixture"))
    kubectl.apply(
        cronconfig(
            "leaky",
            namespace,
            schedule="* * * * * *",
            concurrencyPolicy="Allow",
            context={"secretName": "api-token", "secretKey": "token"},
            job={"handler": {"name": "tests.leaky"}},
        )
    )

    def one_of_each() -> dict[str, RunRecord] | None:
        found: dict[str, RunRecord] = {}
        for r in runs_of(db, namespace, "leaky"):
            if r.status in ("Succeeded", "Failed"):
                found.setdefault(f"{r.status}/{r.reason}", r)
        wanted = {"Succeeded/None", "Failed/JobFailed", "Failed/RuntimeError"}
        return found if wanted <= set(found) else None

    outcomes = wait_until(one_of_each, timeout=30, what="a success, a JobFailed and a crash")
    ok = outcomes["Succeeded/None"]
    assert ok.result == {
        "token": "***",
        "header": "Bearer ***",
        "byToken": {"***": "a secret as a key"},
        "fingerprint": fingerprint(secret),
    }
    expected_log: dict[str, Any] = {"token": "***", "nested": {"list": ["***", "fine"]}}
    for run in outcomes.values():
        assert run.logs[0]["message"] == "using token ***"
        assert run.logs[0]["fields"] == expected_log
    job_failed = outcomes["Failed/JobFailed"]
    assert job_failed.error == "the service rejected token ***"
    assert job_failed.result == {"token": "***"}
    assert outcomes["Failed/RuntimeError"].error == "RuntimeError: crashed while holding ***"
    wait_until(lambda: status_message(kubectl, "leaky", namespace, "***"), what="lastRun.message with ***")
    wait_until(lambda: event_message(kubectl, namespace, "rejected token ***"), what="a JobFailed Event")
    wait_until(lambda: event_message(kubectl, namespace, "holding ***"), what="a crash Event")
    assert "rejected token ***" in op.logs() and "crashed while holding ***" in op.logs()
    assert_nowhere(secret, db=db, kubectl=kubectl, namespace=namespace, op=op)
