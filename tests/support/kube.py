"""kubectl-driven helpers for tests: apply, read, patch and wait, all against the real API server."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class Kubectl:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def apply(self, obj: dict[str, Any] | str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        text = obj if isinstance(obj, str) else yaml.safe_dump(obj)
        return self.run("apply", "-f", "-", stdin=text, check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        out = self.run("get", kind, name, "-n", namespace, "-o", "json").stdout
        return dict(json.loads(out))

    def status(self, name: str, namespace: str) -> dict[str, Any]:
        return dict(self.get("cronconfig", name, namespace).get("status") or {})

    def events(self, namespace: str) -> list[dict[str, Any]]:
        out = self.run("get", "events", "-n", namespace, "-o", "json").stdout
        return list(json.loads(out)["items"])


def cronconfig(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sundial.io/v1alpha1",
        "kind": "CronConfig",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def wait_until(
    fn: Callable[[], T | None], *, timeout: float = 30, interval: float = 0.2, what: str = ""
) -> T:
    """Poll until ``fn`` returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}; last value: {last!r}")
