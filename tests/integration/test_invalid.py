"""Objects that bypassed validation (webhook off) cannot crash the operator or stall other CronConfigs.

The schema lets through what only the scheduler can judge (an unparsable schedule, an unknown time
zone, an unknown handler, a huge context). Each such object gets condition ``Invalid=True`` with the
validator's message and an ``InvalidSpec`` Event, fires nothing, and an every-second CronConfig next to
them keeps running. Fixing a spec clears the condition and it starts firing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sundial import validation
from tests.support.kube import Kubectl, cronconfig, wait_until
from tests.support.operator import OperatorProcess, operator_handler_names
from tests.support.services import ControlPlane

pytestmark = pytest.mark.k8s
HANDLER = {"handler": {"name": "sundial.noop"}}

BAD: dict[str, dict[str, Any]] = {
    "minute-61": {"schedule": "61 * * * *", "job": HANDLER},
    "step-61": {"schedule": "*/61 * * * *", "job": HANDLER},
    "feb-30": {"schedule": "0 0 30 2 *", "job": HANDLER},
    "berln": {"schedule": "@hourly", "timeZone": "Europe/Berln", "job": HANDLER},
    "no-handler": {"schedule": "* * * * * *", "job": {"handler": {"name": "reports.missing"}}},
    "sub-second": {"schedule": "@every 500ms", "job": HANDLER},
    "huge-context": {"schedule": "* * * * * *", "context": {"blob": "x" * 70_000}, "job": HANDLER},
}


def message_for(spec: dict[str, Any]) -> str:
    result = validation.validate_object({"spec": spec}, known_handlers=operator_handler_names())
    assert isinstance(result, validation.Invalid), spec
    return "; ".join(result.problems)


def condition(kubectl: Kubectl, name: str, namespace: str, kind: str) -> dict[str, Any] | None:
    for cond in kubectl.status(name, namespace).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def last_run(kubectl: Kubectl, name: str, namespace: str) -> dict[str, Any]:
    return dict(kubectl.status(name, namespace).get("lastRun") or {})


def test_invalid_objects_are_marked_and_do_not_stall_others(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    env = {"SUNDIAL_DATABASE_URL": f"sqlite:///{tmp_path}/runs.db", "SUNDIAL_NAMESPACES": namespace}
    op = OperatorProcess(kubeconfig=str(control_plane.kubeconfig), env=env, replica="solo", log_dir=tmp_path)
    op.start()
    try:
        for name, spec in BAD.items():
            result = kubectl.apply(cronconfig(name, namespace, **spec), check=False)
            assert result.returncode == 0, f"{name} must get past the schema: {result.stderr}"
        kubectl.apply(cronconfig("steady", namespace, schedule="* * * * * *", job=HANDLER))

        for name, spec in BAD.items():
            expected = message_for(spec)
            invalid = wait_until(
                lambda name=name: (
                    (c := condition(kubectl, name, namespace, "Invalid")) and c["status"] == "True" and c
                ),
                timeout=30,
                what=f"{name} to be marked Invalid",
            )
            assert invalid["reason"] == "InvalidSpec"
            assert invalid["message"] == expected
            ready = condition(kubectl, name, namespace, "Ready")
            assert ready is not None and ready["status"] == "False"
            assert "lastRun" not in kubectl.status(name, namespace), f"{name} must not fire"

        def invalid_events() -> dict[str, str] | None:
            found = {
                e["involvedObject"]["name"]: e["message"]
                for e in kubectl.events(namespace)
                if e.get("reason") == "InvalidSpec" and e.get("type") == "Warning"
            }
            return found if set(found) >= set(BAD) else None

        events = wait_until(invalid_events, timeout=30, what="an InvalidSpec event per bad object")
        for name, spec in BAD.items():
            assert events[name] == message_for(spec)[:1000]

        # The good one keeps running next to them: it succeeds, and runs keep coming.
        first = wait_until(
            lambda: (r := last_run(kubectl, "steady", namespace)).get("status") == "Succeeded" and r,
            timeout=30,
            what="steady to run",
        )
        wait_until(
            lambda: (
                (r := last_run(kubectl, "steady", namespace)).get("status") == "Succeeded"
                and datetime.fromisoformat(r["scheduledTime"])
                > datetime.fromisoformat(first["scheduledTime"])
            ),
            timeout=30,
            what="steady to keep running",
        )

        # Fixing a spec clears the condition, and the CronConfig fires.
        kubectl.run(
            "patch", "cronconfig", "minute-61", "-n", namespace, "--type=merge",
            "-p", '{"spec": {"schedule": "* * * * * *"}}',
        )  # fmt: skip
        cleared = wait_until(
            lambda: (
                (c := condition(kubectl, "minute-61", namespace, "Invalid")) and c["status"] == "False" and c
            ),
            timeout=30,
            what="the Invalid condition to clear",
        )
        assert cleared["reason"] == "Valid"
        wait_until(
            lambda: last_run(kubectl, "minute-61", namespace).get("status") == "Succeeded",
            timeout=30,
            what="the fixed CronConfig to run",
        )
        ready = condition(kubectl, "minute-61", namespace, "Ready")
        assert ready is not None and ready["status"] == "True"

        # Breaking it again re-marks it (and it stops firing); the others are unaffected throughout.
        kubectl.run(
            "patch", "cronconfig", "minute-61", "-n", namespace, "--type=merge",
            "-p", '{"spec": {"timeZone": "Mars/Base"}}',
        )  # fmt: skip
        wait_until(
            lambda: (
                (c := condition(kubectl, "minute-61", namespace, "Invalid"))
                and c["status"] == "True"
                and c["message"] == "spec.timeZone: unknown time zone 'Mars/Base'"
            ),
            timeout=30,
            what="the Invalid condition to come back",
        )
        assert op.proc is not None and op.proc.poll() is None, "the operator survived"
        assert "Traceback" not in op.logs(), op.logs()[-3000:]
    finally:
        try:
            assert op.stop() == 0, op.logs()[-3000:]
        finally:
            op.kill()
