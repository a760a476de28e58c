"""The one retry policy: outages are retried and logged as one line, bugs are raised at once."""

from __future__ import annotations

import logging

import pytest

from sundial.retrying import log_fault, retry_call


class Calls:
    def __init__(self, *outcomes: BaseException | str) -> None:
        self.outcomes = list(outcomes)
        self.count = 0

    async def __call__(self) -> str:
        self.count += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


async def _no_sleep(seconds: float) -> None:
    pass


async def test_transient_failures_are_retried_until_it_works(caplog: pytest.LogCaptureFixture) -> None:
    calls = Calls(ConnectionRefusedError("refused"), TimeoutError(), "ok")
    assert await retry_call(calls, what="reading", sleep=_no_sleep) == "ok"
    assert calls.count == 3
    lines = [r for r in caplog.records if "reading" in r.getMessage()]
    assert len(lines) == 2 and all(r.exc_info is None for r in lines), "one line per outage, no traceback"


async def test_a_bug_is_raised_at_once() -> None:
    calls = Calls(KeyError("bug"), "never")
    with pytest.raises(KeyError):
        await retry_call(calls, what="reading", sleep=_no_sleep)
    assert calls.count == 1


async def test_the_last_failure_is_raised_when_attempts_run_out() -> None:
    calls = Calls(*(ConnectionResetError(str(i)) for i in range(3)))
    with pytest.raises(ConnectionResetError, match="2"):
        await retry_call(calls, what="reading", attempts=3, sleep=_no_sleep)


def test_faults_are_one_line_and_bugs_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    log_fault("writing runs", ConnectionRefusedError("connection refused\nmore detail"))
    log_fault("writing runs", ValueError("a bug"))
    outage, bug = caplog.records
    assert outage.getMessage() == "writing runs failed: ConnectionRefusedError: connection refused"
    assert outage.exc_info is None
    assert bug.levelno == logging.ERROR and bug.exc_info is not None
