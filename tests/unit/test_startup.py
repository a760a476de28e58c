"""Crash-only start-up, in process: a failed start logs one line (a traceback for a bug), stops what
it had started, and raises StartupFailed; ``sundial run`` exits 1 on faults found before any API call."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sundial import app
from sundial.settings import Settings
from tests.support.operator import SUNDIAL
from tests.support.services import ROOT, free_port


def settings_for(tmp_path: Path, **values: object) -> Settings:
    """A replica on a free port with a private SQLite history (which migrates itself)."""
    defaults: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'runs.db'}",
        "http_host": "127.0.0.1",
        "http_port": free_port(),
        "replica": "unit",
    }
    return Settings(**{**defaults, **values})


def failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("start-up failed")]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """The name of a fresh importable module, and the file to write it to."""
    name = f"startup_handlers_{uuid.uuid4().hex[:8]}"
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, tmp_path / f"{name}.py"
    sys.modules.pop(name, None)


async def test_a_bug_keeps_its_traceback_and_the_port_is_closed_again(
    tmp_path: Path, handler_module: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    name, path = handler_module
    path.write_text("import sundial\n\nRATE = 1 / 0  # a bug in a handler module\n")
    settings = settings_for(tmp_path, handlers=[name])
    with pytest.raises(app.StartupFailed):
        await app.start(settings)
    (record,) = failure_records(caplog)
    assert name in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
    assert port_is_free(settings.http_port), "the failed start-up left /metrics listening"


async def test_a_missing_handler_module_is_one_line(
    tmp_path: Path, handler_module: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    name, _ = handler_module  # never written
    with pytest.raises(app.StartupFailed):
        await app.start(settings_for(tmp_path, handlers=[f"{name}.jobs"]))
    (record,) = failure_records(caplog)
    assert record.exc_info is None
    assert f"No module named '{name}'" in record.getMessage()


async def test_redis_down_is_one_line_and_nothing_stays_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(app.StartupFailed):
        await app.start(settings)
    (record,) = failure_records(caplog)
    assert record.exc_info is None
    assert "reaching Redis" in record.getMessage() and "ConnectionError" in record.getMessage()
    assert port_is_free(settings.http_port)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"SUNDIAL_HTTP_PORT": "eighty"},
            "reading the SUNDIAL_* settings: ValidationError: SUNDIAL_HTTP_PORT: Input should be",
        ),
        (
            {"SUNDIAL_WEBHOOK_ENABLED": "true", "SUNDIAL_WEBHOOK_CERT_DIR": "/nonexistent"},
            "preparing the admission webhook's TLS: FileNotFoundError: SUNDIAL_WEBHOOK_CERT_DIR",
        ),
        (
            {"KUBECONFIG": "/nonexistent/kubeconfig", "SUNDIAL_HTTP_PORT": "0"},
            "loading the Kubernetes client configuration: ConfigException",
        ),
    ],
    ids=["malformed-setting", "webhook-certificate", "no-kubeconfig"],
)
def test_sundial_run_exits_1_with_one_line(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    """Faults found before any API call: no control plane needed, the SQLite history lands in tmp_path."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "SUNDIAL_HTTP_HOST": "127.0.0.1", **env}
    done = subprocess.run(
        [str(SUNDIAL), "run"], env=full, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if "start-up failed" in line]
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert "eighty" not in lines[0], "a setting's value may be a secret: never repeated"
    assert "Traceback" not in done.stderr
