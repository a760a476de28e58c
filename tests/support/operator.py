"""Run the real operator (`sundial run`) as a subprocess against the test components."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support.services import ROOT, free_port

SUNDIAL = Path(sys.executable).parent / "sundial"
OPERATOR_HANDLERS = "sundial.examples"
"""``SUNDIAL_HANDLERS`` of every operator the tests start (sundial.echo sleeps and fails on request)."""


@functools.cache
def operator_handler_names() -> list[str]:
    """The handler names an operator started by the tests knows, from a fresh interpreter.

    Not this process's registry: tests that import handler modules (tests/engine) register more.
    """
    code = (
        "from sundial.jobs import registry; "
        f"registry.load({OPERATOR_HANDLERS.split(',')!r}); print(','.join(registry.names()))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return out.strip().split(",")


class OperatorProcess:
    def __init__(
        self,
        *,
        kubeconfig: str,
        env: dict[str, str],
        replica: str,
        log_dir: Path,
        command: list[str] | None = None,
    ) -> None:
        self.command = command or [str(SUNDIAL), "run"]
        self.port = free_port()
        self.replica = replica
        self.log_path = log_dir / f"operator-{replica}-{self.port}.log"
        self.env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "SUNDIAL_REPLICA": replica,
            "SUNDIAL_HTTP_PORT": str(self.port),
            "SUNDIAL_HTTP_HOST": "127.0.0.1",
            "PYTHONPATH": str(ROOT),
            "SUNDIAL_HANDLERS": OPERATOR_HANDLERS,
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = False
        """Set by :meth:`kill`: the test crashed this replica on purpose, its exit code means nothing."""

    def start(self, *, timeout: float = 60) -> OperatorProcess:
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=str(self.log_path.parent),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r,
            ):
                if r.status == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"operator not healthy within {timeout}s:\n{self.logs()[-4000:]}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, *, timeout: float = 40) -> int:
        """SIGTERM, like Kubernetes does, and wait for a clean exit."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        """SIGKILL: a crashed replica that releases nothing."""
        self.killed = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def running_operator(
    *, kubeconfig: str, env: dict[str, str], replica: str = "replica-a", log_dir: Path | None = None
) -> Iterator[OperatorProcess]:
    directory = log_dir or Path(tempfile.mkdtemp(prefix="sundial-op-"))
    op = OperatorProcess(kubeconfig=kubeconfig, env=env, replica=replica, log_dir=directory).start()
    try:
        yield op
    except BaseException:
        op.kill()
        raise
    code, killed = op.stop(), op.killed
    op.kill()
    assert killed or code == 0, f"operator exited with {code} after SIGTERM:\n{op.logs()[-3000:]}"
