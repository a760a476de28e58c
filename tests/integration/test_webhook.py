"""The validating admission webhook, served by the real operator, called by the real API server.

Each rejection shows up at ``kubectl apply`` time with the validator's message; warnings come back as
``Warning:`` lines; metadata-only updates are never blocked. Two TLS set-ups are covered: kopf's
managed mode with a per-process self-signed certificate (local runs), and the chart's set-up (a
ValidatingWebhookConfiguration the operator only injects its CA into, and a certificate shared by
replicas through a Secret).
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from sundial import validation
from sundial.kube import load_client
from sundial.webhook import certs, inject, keeper, secret
from tests.support.kube import Kubectl, cronconfig, wait_until
from tests.support.operator import OperatorProcess, operator_handler_names
from tests.support.services import ControlPlane, free_port
from tests.unit.test_validation import REJECTIONS

pytestmark = pytest.mark.k8s
HANDLER = {"handler": {"name": "sundial.noop"}}


def spec_for(case: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"schedule": "*/5 * * * *", "job": HANDLER}
    spec.update(case)
    return spec


def expected_message(spec: dict[str, Any]) -> str:
    """What the operator's validator says about ``spec``, computed here with the same code."""
    result = validation.validate_object({"spec": spec}, known_handlers=operator_handler_names())
    assert isinstance(result, validation.Invalid)
    return "; ".join(result.problems)


def remove_webhook_configurations(kubectl: Kubectl, name: str) -> None:
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        kubectl.run("delete", kind, name, "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def module_namespace(kubectl: Kubectl) -> Iterator[str]:
    ns = f"wh-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", ns)
    yield ns
    kubectl.run("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def webhook(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    module_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator with the webhook on, in kopf's managed mode (it registers itself at 127.0.0.1)."""
    managed = f"{module_namespace}.webhook.sundial.io"
    workdir = tmp_path_factory.mktemp("webhook")
    env = {
        "SUNDIAL_DATABASE_URL": f"sqlite:///{workdir}/runs.db",
        "SUNDIAL_NAMESPACES": module_namespace,
        "SUNDIAL_WEBHOOK_ENABLED": "true",
        "SUNDIAL_WEBHOOK_ADDR": "127.0.0.1",
        "SUNDIAL_WEBHOOK_PORT": str(free_port()),
        "SUNDIAL_WEBHOOK_MANAGED": managed,
    }
    op = OperatorProcess(
        kubeconfig=str(control_plane.kubeconfig), env=env, replica="webhook", log_dir=workdir
    )
    op.start()
    try:
        # Ready when the API server calls us: a server-side dry run of a bad object is rejected.
        wait_until(
            lambda: (
                "denied the request"
                in apply(
                    kubectl, module_namespace, "probe", {"schedule": "x", "job": HANDLER}, "--dry-run=server"
                ).stderr
            ),
            timeout=30,
            what="the webhook to be registered and serving",
        )
        yield op
    finally:
        try:
            assert op.stop() == 0, op.logs()[-3000:]
        finally:
            op.kill()
            remove_webhook_configurations(kubectl, managed)


def apply(kubectl: Kubectl, namespace: str, name: str, spec: dict[str, Any], *flags: str) -> Any:
    text = yaml.safe_dump(cronconfig(name, namespace, **spec))
    return kubectl.run("apply", *flags, "-f", "-", stdin=text, check=False)


# -------------------------------------------------------------------------------------- rejections
@pytest.mark.parametrize("case", [case for case in REJECTIONS if "cross-namespace" not in case])
def test_rejected_at_apply_time_with_the_message(
    webhook: OperatorProcess, kubectl: Kubectl, module_namespace: str, case: str
) -> None:
    spec = spec_for(REJECTIONS[case][0])
    result = apply(kubectl, module_namespace, f"bad-{uuid.uuid4().hex[:6]}", spec)
    assert result.returncode != 0
    assert "denied the request: " + expected_message(spec) in result.stderr, result.stderr
    if "handler" not in case:  # the unit test's registry differs from the operator's
        assert REJECTIONS[case][1] in result.stderr
    assert kubectl.run("get", "cronconfigs", "-n", module_namespace, "-o", "name").stdout.count("bad-") == 0


def test_the_issue_example(webhook: OperatorProcess, kubectl: Kubectl, module_namespace: str) -> None:
    result = apply(kubectl, module_namespace, "every-61", {"schedule": "*/61 * * * *", "job": HANDLER})
    assert result.returncode == 1
    assert "spec.schedule: minute field value 61 out of range 0-59" in result.stderr


def test_every_problem_in_one_message(
    webhook: OperatorProcess, kubectl: Kubectl, module_namespace: str
) -> None:
    spec = {"schedule": "61 * * * *", "timeZone": "Europe/Berln", "job": {"handler": {"name": "no.such"}}}
    result = apply(kubectl, module_namespace, "many", spec)
    assert result.returncode != 0
    for message in (
        "spec.schedule: minute field value 61 out of range 0-59",
        "spec.timeZone: unknown time zone 'Europe/Berln'",
        "spec.job.handler.name: no handler named 'no.such' is registered",
    ):
        assert message in result.stderr


def test_cross_namespace_secret_refs_never_get_in(
    webhook: OperatorProcess, kubectl: Kubectl, module_namespace: str
) -> None:
    """The CRD has no namespace field there: kubectl's strict field validation rejects it by name, and
    without it the API server prunes the field before admission, so the reference stays in-namespace."""
    ref = {"name": "token", "key": "t", "namespace": "kube-system"}
    spec = {
        "schedule": "@hourly",
        "job": {
            "http": {
                "url": "https://example.com",
                "headersFrom": [{"name": "Authorization", "secretKeyRef": ref}],
            }
        },
    }
    result = apply(kubectl, module_namespace, "cross", spec)
    assert result.returncode != 0
    assert 'unknown field "spec.job.http.headersFrom[0].secretKeyRef.namespace"' in result.stderr
    assert apply(kubectl, module_namespace, "cross", spec, "--validate=false").returncode == 0
    stored = kubectl.get("cronconfig", "cross", module_namespace)["spec"]["job"]["http"]["headersFrom"][0]
    assert stored["secretKeyRef"] == {"name": "token", "key": "t"}


# ------------------------------------------------------------------------------- warnings, updates
def test_warnings_are_shown_and_do_not_reject(
    webhook: OperatorProcess, kubectl: Kubectl, module_namespace: str
) -> None:
    spec = {
        "schedule": "* * * * *",
        "concurrencyPolicy": "Allow",
        "jitterSeconds": 90,
        "startingDeadlineSeconds": 30,
        "job": HANDLER,
    }
    result = apply(kubectl, module_namespace, "risky", spec)
    assert result.returncode == 0, result.stderr
    assert "Warning: spec.timeoutSeconds: 3600s is longer than the schedule's period (60s)" in result.stderr
    assert "Warning: spec.jitterSeconds: 90s is larger than the schedule's period (60s)" in result.stderr
    assert "Warning: spec.startingDeadlineSeconds: 30s is smaller than jitterSeconds (90s)" in result.stderr

    past = apply(kubectl, module_namespace, "once", {"runAt": "2020-01-01T00:00:00Z", "job": HANDLER})
    assert past.returncode == 0, past.stderr
    assert "Warning: spec.runAt: 2020-01-01T00:00:00Z is in the past" in past.stderr


def _template(container: dict[str, Any]) -> dict[str, Any]:
    return {
        "template": {
            "spec": {
                "backoffLimit": 0,
                "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
            }
        }
    }


def test_a_bad_pod_spec_is_refused_by_the_api_servers_own_job_validation(
    webhook: OperatorProcess, kubectl: Kubectl, module_namespace: str
) -> None:
    """A template whose Job the API server would refuse is rejected at apply time with the API
    server's own message, under ``spec.job.template``; a good one gets in; no Job is created."""
    bad = {"schedule": "@hourly", "job": _template({"name": "Main_X", "image": "", "command": ["date"]})}
    result = apply(kubectl, module_namespace, "bad-pod", bad)
    assert result.returncode != 0
    assert "spec.job.template.spec.template.spec.containers[0].image: Required value" in result.stderr
    assert 'spec.job.template.spec.template.spec.containers[0].name: Invalid value: "Main_X"' in result.stderr
    good = {
        "schedule": "@hourly",
        "job": _template({"name": "main", "image": "busybox", "command": ["date"]}),
    }
    assert apply(kubectl, module_namespace, "good-pod", good).returncode == 0
    jobs = kubectl.run("get", "jobs", "-n", module_namespace, "-o", "name").stdout
    assert jobs.strip() == "", f"a dry run created Jobs: {jobs}"
    # an edit that breaks the pod spec is refused too; the object keeps its good spec
    broken = {**good, "job": _template({"name": "main", "image": "busybox", "restartPolicy": "Sometimes"})}
    result = apply(kubectl, module_namespace, "good-pod", broken)
    assert result.returncode != 0 and "spec.job.template.spec.template.spec.containers[0]" in result.stderr
    current = kubectl.get("cronconfig", "good-pod", module_namespace)
    assert current["spec"]["job"]["template"]["spec"]["template"]["spec"]["containers"][0].get("command") == [
        "date"
    ]


def test_validate_server_dry_runs_template_jobs(
    kubectl: Kubectl, control_plane: ControlPlane, module_namespace: str, tmp_path: Path
) -> None:
    """``sundial validate --server`` reports what the API server finds in a template's Job, names
    the field, exits 1, and creates nothing; offline (no --server) the same file passes."""
    bad = cronconfig(
        "bad",
        module_namespace,
        schedule="@hourly",
        job=_template({"name": "main", "image": "", "command": ["x"]}),
    )
    good = cronconfig(
        "good", module_namespace, schedule="@hourly", job=_template({"name": "main", "image": "busybox"})
    )
    path = tmp_path / "cc.yaml"
    path.write_text(yaml.safe_dump_all([bad, good]))
    env = {**control_plane.env()}
    sundial = str(Path(sys.executable).parent / "sundial")
    offline = subprocess.run(
        [sundial, "validate", str(path)], capture_output=True, text=True, env=env, check=False
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    server = subprocess.run(
        [sundial, "validate", "--server", str(path)], capture_output=True, text=True, env=env, check=False
    )
    assert server.returncode == 1, server.stdout + server.stderr
    image = "spec.job.template.spec.template.spec.containers[0].image"
    assert f"CronConfig {module_namespace}/bad: {image}: Required value" in server.stdout
    assert f"{module_namespace}/good" not in server.stdout
    missing = cronconfig(
        "elsewhere", "no-such-ns", schedule="@hourly", job=_template({"name": "main", "image": "busybox"})
    )
    path.write_text(yaml.safe_dump(missing))
    server = subprocess.run(
        [sundial, "validate", "--server", str(path)], capture_output=True, text=True, env=env, check=False
    )
    assert server.returncode == 1 and "namespace 'no-such-ns' not found" in server.stdout, server.stdout
    assert kubectl.run("get", "jobs", "-n", module_namespace, "-o", "name").stdout.strip() == ""


def test_updates_are_validated_but_metadata_changes_pass(
    webhook: OperatorProcess, kubectl: Kubectl, module_namespace: str
) -> None:
    assert apply(kubectl, module_namespace, "good", {"schedule": "@hourly", "job": HANDLER}).returncode == 0
    broken = apply(
        kubectl, module_namespace, "good", {"schedule": "@hourly", "timeZone": "Mars/Base", "job": HANDLER}
    )
    assert broken.returncode != 0 and "spec.timeZone: unknown time zone 'Mars/Base'" in broken.stderr
    patch = kubectl.run(
        "patch",
        "cronconfig",
        "good",
        "-n",
        module_namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"schedule": "0 0 31 2 *"}}),
        check=False,
    )
    assert patch.returncode != 0 and "day-of-month 31 never occurs in February" in patch.stderr
    kubectl.run("annotate", "cronconfig", "good", "-n", module_namespace, "example.com/owner=team-a")
    assert kubectl.get("cronconfig", "good", module_namespace)["spec"]["schedule"] == "@hourly"


# ------------------------------------------------------------------------------ the chart's set-up
def served_certificate(port: int) -> str:
    return ssl.get_server_certificate(("127.0.0.1", port), timeout=5)


def verify_handshake(port: int, bundle: bytes) -> None:
    """Connect as the API server does: the served chain must verify against the bundle, for 127.0.0.1."""
    context = ssl.create_default_context(cadata=bundle.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version()


def ca_bundle_of(kubectl: Kubectl, name: str, index: int = 0) -> str | None:
    out = kubectl.run("get", "validatingwebhookconfiguration", name, "-o", "json").stdout
    return str(json.loads(out)["webhooks"][index]["clientConfig"].get("caBundle") or "") or None


def test_chart_setup_injects_the_ca_and_replicas_share_the_certificate(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    """As the chart deploys it: the chart creates the configuration (without caBundle) and an empty
    Secret; each replica fills/reads the Secret, serves the same certificate and injects the CA."""
    name, secret = f"{namespace}-webhook", f"{namespace}-webhook-tls"
    port_a, port_b = free_port(), free_port()
    kubectl.run("create", "secret", "generic", secret, "-n", namespace)
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "cronconfigs.sundial.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "clientConfig": {"url": f"https://127.0.0.1:{port_a}/validate-cronconfigs"},
                "rules": [
                    {
                        "apiGroups": ["sundial.io"],
                        "apiVersions": ["v1alpha1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["cronconfigs"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            }
        ],
    }
    kubectl.run("apply", "-f", "-", stdin=json.dumps(configuration))
    started: list[OperatorProcess] = []
    try:
        for replica, port in (("a", port_a), ("b", port_b)):
            env = {
                "SUNDIAL_DATABASE_URL": f"sqlite:///{tmp_path}/runs-{replica}.db",
                "SUNDIAL_NAMESPACES": namespace,
                "SUNDIAL_WEBHOOK_ENABLED": "true",
                "SUNDIAL_WEBHOOK_ADDR": "127.0.0.1",
                "SUNDIAL_WEBHOOK_PORT": str(port),
                "SUNDIAL_WEBHOOK_CONFIGURATION": name,
                "SUNDIAL_WEBHOOK_CERT_SECRET": secret,
                "SUNDIAL_POD_NAMESPACE": namespace,
            }
            op = OperatorProcess(
                kubeconfig=str(control_plane.kubeconfig), env=env, replica=replica, log_dir=tmp_path
            )
            started.append(op)
            op.start()

        def injected() -> str | None:
            return ca_bundle_of(kubectl, name)

        bundle = base64.b64decode(wait_until(injected, timeout=30, what="the CA bundle to be injected"))
        data = kubectl.get("secret", secret, namespace)["data"]
        assert sorted(data) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
        assert base64.b64decode(data["ca.crt"]) == bundle

        # Both replicas serve the one shared certificate, which the injected CA bundle trusts.
        wait_until(lambda: served_certificate(port_b), timeout=30, what="replica b's webhook server")
        assert served_certificate(port_a) == served_certificate(port_b)
        assert served_certificate(port_a).encode() == base64.b64decode(data["tls.crt"])
        verify_handshake(port_b, bundle)

        result = apply(kubectl, namespace, "bad", {"schedule": "*/61 * * * *", "job": HANDLER})
        assert result.returncode != 0
        assert "spec.schedule: minute field value 61 out of range 0-59" in result.stderr
        assert apply(kubectl, namespace, "fine", {"schedule": "@daily", "job": HANDLER}).returncode == 0

    finally:
        kubectl.run("delete", "validatingwebhookconfiguration", name, "--ignore-not-found", check=False)
        codes = []
        for op in started:
            try:
                codes.append(op.stop())
            finally:
                op.kill()
        if sys.exc_info()[0] is None:  # a failure of the test itself stays the reported one
            assert codes == [0] * len(started), codes


def test_ca_injection_repairs_a_reapplied_configuration(
    kubectl: Kubectl, control_plane: ControlPlane
) -> None:
    """A `helm upgrade` may leave the configuration without caBundle: the next check writes it back."""
    name = f"inject-{uuid.uuid4().hex[:8]}"
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"hook{index}.sundial.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "clientConfig": {"url": "https://127.0.0.1:1/validate-cronconfigs"},
                "rules": [
                    {
                        "apiGroups": ["example.invalid"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["nothings"],
                    }
                ],
            }
            for index in range(2)
        ],
    }
    kubectl.run("apply", "-f", "-", stdin=json.dumps(configuration))
    injector = inject.CABundleInjector(load_client(str(control_plane.kubeconfig)), configuration=name)
    try:
        assert injector.inject(b"bundle-1") == 2
        assert base64.b64decode(ca_bundle_of(kubectl, name) or "") == b"bundle-1"
        assert injector.inject(b"bundle-1") == 0
        kubectl.run(
            "patch",
            "validatingwebhookconfiguration",
            name,
            "--type=json",
            "-p",
            json.dumps([{"op": "remove", "path": "/webhooks/1/clientConfig/caBundle"}]),
        )
        assert injector.inject(b"bundle-1") == 1
        assert injector.inject(b"bundle-2") == 2
        assert base64.b64decode(ca_bundle_of(kubectl, name, index=1) or "") == b"bundle-2"
    finally:
        kubectl.run("delete", "validatingwebhookconfiguration", name, "--ignore-not-found", check=False)


def test_replicas_race_to_renew_and_agree(
    kubectl: Kubectl, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """Two replicas renew the shared Secret at the same moment: one write wins (resourceVersion), the
    other gets 409 Conflict, takes the winner's material, and both serve the same files."""
    kubectl.run("create", "secret", "generic", "tls", "-n", namespace)
    api = load_client(str(control_plane.kubeconfig))
    hosts = ["127.0.0.1"]
    a = secret.SecretSource(
        api, namespace=namespace, name="tls", files=keeper.CertificateFiles(tmp_path / "a"), hostnames=hosts
    )
    b = secret.SecretSource(
        api, namespace=namespace, name="tls", files=keeper.CertificateFiles(tmp_path / "b"), hostnames=hosts
    )
    now = datetime.now(UTC)
    stale = b._load()  # b reads the empty Secret, then a writes first
    assert a.sync(now) is certs.Renewed.CA
    loads = iter([stale])
    real_load = b._load
    b._load = lambda: next(loads, None) or real_load()  # type: ignore[method-assign]
    assert b.sync(now) is certs.Renewed.CA  # its write conflicted: it mirrors a's material instead
    assert a.files.read() == b.files.read()
    assert b.sync(now) is certs.Renewed.NOTHING

    # Day 61: whoever renews first, the other follows on its next sync; the CA bundle is unchanged.
    later = now + timedelta(days=61)
    assert b.sync(later) is certs.Renewed.SERVING
    assert a.sync(later) is certs.Renewed.SERVING
    assert a.files.read() == b.files.read()
