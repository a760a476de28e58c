"""The CRD on a real API server: it is accepted, and the server agrees with the models.

The server's verdict (CEL rules, defaults, pruning, printer columns) is compared with what
``sundial.models`` says about the same objects. Needs the local control plane (``tests/conftest.py``);
without it (e.g. ``--noconftest``) the tests skip.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sundial import models
from tests.unit import test_crd

pytestmark = pytest.mark.k8s


class Cluster:
    def __init__(self, env: dict[str, str], namespace: str) -> None:
        self.env = env
        self.namespace = namespace

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args], input=input, env=self.env, capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def manifest(self, name: str, spec: dict[str, Any]) -> str:
        return json.dumps(
            {
                "apiVersion": "sundial.io/v1alpha1",
                "kind": "CronConfig",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": spec,
            }
        )

    def dry_run(self, spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.kubectl(
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
            input=self.manifest("probe", spec),
            check=False,
        )


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    try:
        plane = request.getfixturevalue("control_plane")
    except pytest.FixtureLookupError:
        pytest.skip("needs the control_plane fixture from tests/conftest.py")
    namespace = f"crd-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(plane.env(), namespace)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(test_crd.CANONICAL))
    cluster.kubectl("wait", "--for=condition=Established", "crd/cronconfigs.sundial.io", "--timeout=60s")
    cluster.kubectl("create", "namespace", namespace)
    yield cluster
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.mark.parametrize("case", test_crd.CEL_CASES)
def test_server_and_models_agree(cluster: Cluster, case: str) -> None:
    spec = test_crd.CEL_CASES[case]
    result = cluster.dry_run(spec)
    expected = test_crd.model_rule_errors(spec)
    if case in test_crd.VALID:
        assert result.returncode == 0, result.stderr
        stored = json.loads(result.stdout)["spec"]
        parsed = models.CronConfigSpec.model_validate(spec)
        assert stored == parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    else:
        assert result.returncode != 0
        for line in expected:
            path, message = line.split(": ", 1)
            assert f'{path}: Invalid value: "object": {message}' in result.stderr


def test_field_errors_are_rejected_by_the_server_too(cluster: Cluster) -> None:
    spec = {
        "schedule": "x" * 257,
        "concurrencyPolicy": "Sometimes",
        "jitterSeconds": -1,
        "job": {"http": {"url": "ftp://x", "method": "FETCH", "successStatusCodes": [200, 200, 99]}},
    }
    result = cluster.dry_run(spec)
    assert result.returncode != 0
    for path in (
        "spec.schedule",
        "spec.concurrencyPolicy",
        "spec.jitterSeconds",
        "spec.job.http.url",
        "spec.job.http.method",
        "spec.job.http.successStatusCodes[1]",
        "spec.job.http.successStatusCodes[2]",
    ):
        assert path in result.stderr


def test_contract_example_and_status_round_trip(cluster: Cluster) -> None:
    from tests.unit import test_models

    name = "nightly-report"
    spec = test_models.contract_spec()
    cluster.kubectl("apply", "-f", "-", input=cluster.manifest(name, spec))
    stored = json.loads(
        cluster.kubectl("get", "cronconfig", name, "-n", cluster.namespace, "-o", "json").stdout
    )
    parsed = models.CronConfigSpec.model_validate(stored["spec"])
    assert parsed.model_dump(mode="json", by_alias=True, exclude_none=True) == stored["spec"]

    status = models.CronConfigStatus.model_validate(
        {
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Scheduled",
                    "lastTransitionTime": "2020-01-01T00:00:00Z",
                }
            ],
            "nextScheduleTime": "2999-01-01T02:00:00Z",
            "lastScheduleTime": "2020-01-01T02:00:00Z",
            "lastRun": {
                "id": "r1",
                "status": "Failed",
                "trigger": "Schedule",
                "attempt": 1,
                "message": "boom",
            },
            "active": [{"id": "r2", "replica": "sundial-0"}],
        }
    )
    patch = ["--subresource=status", "--type=merge"]
    cluster.kubectl(
        "patch",
        "cronconfig",
        name,
        "-n",
        cluster.namespace,
        *patch,
        "-p",
        json.dumps({"status": status.to_merge_patch()}),
    )
    rows = cluster.kubectl("get", "ccfg", name, "-n", cluster.namespace).stdout.splitlines()
    assert rows[0].split() == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "LAST",
        "STATUS",
        "LAST",
        "RUN",
        "NEXT",
        "RUN",
        "AGE",
    ]
    assert rows[1].split()[:9] == [
        "nightly-report",
        "0",
        "2",
        "*",
        "*",
        "*",
        "Europe/Berlin",
        "false",
        "Failed",
    ]

    # A later, smaller status: the merge patch removes what is no longer set.
    later = models.CronConfigStatus(
        observed_generation=1,
        conditions=status.conditions,
        last_run=models.LastRun(id="r3", status=models.RunStatus.SUCCEEDED, trigger=models.Trigger.MANUAL),
    )
    cluster.kubectl(
        "patch",
        "cronconfig",
        name,
        "-n",
        cluster.namespace,
        *patch,
        "-p",
        json.dumps({"status": later.to_merge_patch()}),
    )
    stored = json.loads(
        cluster.kubectl("get", "cronconfig", name, "-n", cluster.namespace, "-o", "json").stdout
    )
    assert models.CronConfigStatus.model_validate(stored["status"]).to_dict() == later.to_dict()
    assert "message" not in stored["status"]["lastRun"]
    assert "nextScheduleTime" not in stored["status"]


def test_kubectl_explain_is_useful(cluster: Cluster) -> None:
    result = cluster.kubectl("explain", "cronconfig.spec.job.http")
    assert "successStatusCodes" in result.stdout
    assert "Secret" in result.stdout
