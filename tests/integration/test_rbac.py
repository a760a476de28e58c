"""The chart's RBAC is enough for the real operator, and no more.

The chart is installed into the local control plane; a token of its ServiceAccount (`kubectl create
token`) goes into a kubeconfig of its own. With that identity `kubectl auth can-i` answers for every
verb the operator needs and for ones it must not have, and the real operator process (`sundial
run`) runs CronConfigs: a handler job and an HTTP job whose header comes from a Secret, with the
admission webhook in its self-signed mode (the operator fills the chart's certificate Secret and
injects its CA into the chart's ValidatingWebhookConfiguration). Cluster-wide (the default) and
namespaced (`watchNamespaces`: Roles only) modes.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.operator import OperatorProcess, running_operator
from tests.support.services import ROOT, ControlPlane, free_port

pytestmark = pytest.mark.k8s

CHART = ROOT / "charts" / "sundial"
SECRET_VALUE = "Bearer rbac-test-token-4711"


@dataclass(frozen=True)
class Access:
    verb: str
    resource: str
    sub: str
    namespace: str | None  # None: cluster-wide (--all-namespaces)
    allowed: bool

    def __str__(self) -> str:
        what = f"{self.resource}/{self.sub}" if self.sub else self.resource
        where = f"in {self.namespace}" if self.namespace else "cluster-wide"
        return f"{'should' if self.allowed else 'should not'} be able to {self.verb} {what} {where}"


FORBIDDEN = re.compile(r"(?<![,.:])\b403\b|orbidden")


def expect(rules: list[tuple[str, str, str]], namespace: str | None, *, allowed: bool) -> list[Access]:
    return [Access(verb, resource, sub, namespace, allowed) for verb, resource, sub in rules]


# What the operator does in every namespace it watches: (verb, resource, subresource).
NEEDED: list[tuple[str, str, str]] = [
    *[(verb, "cronconfigs.sundial.io", "") for verb in ("get", "list", "watch", "patch")],
    *[(verb, "cronconfigs.sundial.io", "status") for verb in ("get", "patch", "update")],
    ("create", "events", ""),
    ("patch", "events", ""),
    ("get", "secrets", ""),
    *[(verb, "jobs.batch", "") for verb in ("get", "list", "watch", "create", "delete")],
]
# What it must never be able to do, even where it watches.
DENIED: list[tuple[str, str, str]] = [
    ("list", "secrets", ""),
    ("watch", "secrets", ""),
    ("create", "secrets", ""),
    ("update", "secrets", ""),
    ("delete", "secrets", ""),
    ("create", "cronconfigs.sundial.io", ""),
    ("update", "cronconfigs.sundial.io", ""),
    ("delete", "cronconfigs.sundial.io", ""),
    ("update", "jobs.batch", ""),
    ("create", "pods", ""),
    ("create", "pods", "exec"),
    ("get", "configmaps", ""),
    ("create", "serviceaccounts", "token"),
    ("create", "roles.rbac.authorization.k8s.io", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", ""),
]


def webhook_access(release_ns: str, release: str) -> list[Access]:
    """Self-signed webhook: its own Secret and configuration, by name, and nothing else."""
    secret, config = f"{release}-sundial-webhook-tls", f"{release}-sundial-webhook"
    vwc = "validatingwebhookconfigurations.admissionregistration.k8s.io"
    return [
        *[
            Access(verb, f"secrets/{secret}", "", release_ns, allowed=True)
            for verb in ("get", "update", "patch")
        ],
        Access("patch", "secrets/other", "", release_ns, allowed=False),
        Access("delete", f"secrets/{secret}", "", release_ns, allowed=False),
        *[Access(verb, f"{vwc}/{config}", "", None, allowed=True) for verb in ("get", "update", "patch")],
        Access("patch", f"{vwc}/other", "", None, allowed=False),
        Access("delete", f"{vwc}/{config}", "", None, allowed=False),
        Access("create", vwc, "", None, allowed=False),
    ]


# kopf follows the CRDs of what it serves (cluster-wide mode only).
KOPF_CLUSTER: list[tuple[str, str, str]] = [
    (verb, "customresourcedefinitions.apiextensions.k8s.io", "") for verb in ("get", "list", "watch")
]
DENIED_CLUSTER: list[tuple[str, str, str]] = [
    ("list", "namespaces", ""),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("create", "clusterroles.rbac.authorization.k8s.io", ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("impersonate", "users", ""),
    ("list", "nodes", ""),
]


class Cluster:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.admin = str(plane.kubeconfig)

    def kubectl(
        self, *args: str, kubeconfig: str | None = None, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig or self.admin, *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=json.dumps(obj))

    def helm(self, *args: str) -> None:
        proc = subprocess.run(
            [str(self.plane.helm), "--kubeconfig", self.admin, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")

    def token_kubeconfig(self, namespace: str, service_account: str, path: Path) -> str:
        """A kubeconfig that authenticates as the ServiceAccount, with a token from the TokenRequest API."""
        token = self.kubectl(
            "create", "token", service_account, "-n", namespace, "--duration", "1h"
        ).stdout.strip()
        admin = yaml.safe_load(Path(self.admin).read_text())
        cluster = admin["clusters"][0]["cluster"]
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "local",
                            "cluster": {
                                "server": cluster["server"],
                                "certificate-authority": cluster["certificate-authority"],
                            },
                        }
                    ],
                    "users": [{"name": service_account, "user": {"token": token}}],
                    "contexts": [{"name": "sa", "context": {"cluster": "local", "user": service_account}}],
                    "current-context": "sa",
                }
            )
        )
        return str(path)

    def can_i(
        self, kubeconfig: str, verb: str, resource: str, subresource: str, namespace: str | None
    ) -> bool:
        args = ["auth", "can-i", verb, resource]
        if subresource:
            args.append(f"--subresource={subresource}")
        args += ["-n", namespace] if namespace else ["--all-namespaces"]
        answer = self.kubectl(*args, kubeconfig=kubeconfig, check=False).stdout.strip()
        assert answer in {"yes", "no"}, answer
        return answer == "yes"

    def wrong_answers(self, kubeconfig: str, expected: list[Access]) -> list[str]:
        """`kubectl auth can-i` for each expectation (a few at a time); the ones answered otherwise."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(
                pool.map(lambda a: self.can_i(kubeconfig, a.verb, a.resource, a.sub, a.namespace), expected)
            )
        return [
            str(access) for access, answer in zip(expected, answers, strict=True) if answer != access.allowed
        ]


@dataclass
class Receiver:
    url: str = ""
    authorizations: list[str] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rec.authorizations.append(self.headers.get("Authorization", ""))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@dataclass
class Installed:
    cluster: Cluster
    release: str
    namespace: str  # the release's
    watched: str  # where the CronConfigs go
    other: str  # a namespace that is not watched in namespaced mode
    kubeconfig: str  # the ServiceAccount's


@pytest.fixture
def install(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Callable[[bool], Installed]]:
    cluster = Cluster(control_plane)
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=30s", "crd/cronconfigs.sundial.io")
    suffix = uuid.uuid4().hex[:6]
    release, namespaces = f"rbac-{suffix}", [f"rbac-{suffix}", f"rbac-{suffix}-team", f"rbac-{suffix}-other"]
    for name in namespaces:
        cluster.kubectl("create", "namespace", name)

    def do_install(namespaced: bool) -> Installed:
        release_ns, watched, other = namespaces
        # The webhook in its self-signed mode: the operator shares its certificate in a Secret and
        # injects the CA into the chart's configuration (Ignore: nothing serves it in this cluster).
        options = [
            "--set",
            "crds.enabled=false",
            "--set",
            "webhook.enabled=true",
            "--set",
            "webhook.failurePolicy=Ignore",
        ]
        if namespaced:
            options += ["--set", f"watchNamespaces={{{watched}}}"]
        cluster.helm("install", release, str(CHART), "--namespace", release_ns, *options)
        kubeconfig = cluster.token_kubeconfig(release_ns, release + "-sundial", tmp_path / "sa.kubeconfig")
        return Installed(cluster, release, release_ns, watched, other, kubeconfig)

    yield do_install
    cluster.helm("uninstall", release, "--namespace", namespaces[0])
    for name in namespaces:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def run_jobs(setup: Installed, operator: OperatorProcess, receiver: Receiver) -> None:
    """A handler job and an HTTP job with a header from a Secret both succeed under the chart's RBAC."""
    cluster, ns = setup.cluster, setup.watched
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook-token", "namespace": ns},
            "stringData": {"token": SECRET_VALUE},
        }
    )
    schedule = "*/2 * * * * *"
    for name, job in (
        ("echo", {"handler": {"name": "sundial.echo"}}),
        (
            "hook",
            {
                "http": {
                    "url": receiver.url,
                    "method": "POST",
                    "headersFrom": [
                        {"name": "Authorization", "secretKeyRef": {"name": "hook-token", "key": "token"}}
                    ],
                }
            },
        ),
    ):
        cluster.apply(
            {
                "apiVersion": "sundial.io/v1alpha1",
                "kind": "CronConfig",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"schedule": schedule, "timeoutSeconds": 5, "job": job},
            }
        )

    def last_status(name: str) -> str:
        obj = json.loads(cluster.kubectl("get", "cronconfig", name, "-n", ns, "-o", "json").stdout)
        return str(((obj.get("status") or {}).get("lastRun") or {}).get("status") or "")

    deadline = time.monotonic() + 60
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        # a 403, not the milliseconds of a log timestamp (",403")
        forbidden = [line for line in operator.logs().splitlines() if FORBIDDEN.search(line)]
        hint = (
            "\n(kopf scans namespaces and CRDs cluster-wide unless told not to: in namespaced mode the "
            "operator must set settings.scanning.disabled = True)"
            if any("/namespaces" in line or "customresourcedefinitions" in line for line in forbidden)
            else ""
        )
        denials = "\n".join(forbidden[:4])
        assert not forbidden, f"RBAC denials under the chart's ServiceAccount:\n{denials}{hint}"
        statuses = {name: last_status(name) for name in ("echo", "hook")}
        if all(status == "Succeeded" for status in statuses.values()):
            break
        time.sleep(0.5)
    assert statuses == {"echo": "Succeeded", "hook": "Succeeded"}, f"{statuses}\n{operator.logs()[-3000:]}"
    assert SECRET_VALUE in receiver.authorizations
    assert SECRET_VALUE not in operator.logs()


def operator_env(tmp_path: Path, setup: Installed, namespaces: str) -> dict[str, str]:
    """What the chart's Deployment sets (database and Redis aside: embedded, as with the defaults)."""
    return {
        "SUNDIAL_DATABASE_URL": f"sqlite:///{tmp_path / 'history.db'}",
        "SUNDIAL_NAMESPACES": namespaces,
        "SUNDIAL_REDIS_URL": "",
        "SUNDIAL_WEBHOOK_ENABLED": "true",
        "SUNDIAL_WEBHOOK_ADDR": "127.0.0.1",
        "SUNDIAL_WEBHOOK_PORT": str(free_port()),
        "SUNDIAL_WEBHOOK_HOST": f"{setup.release}-sundial-webhook.{setup.namespace}.svc",
        "SUNDIAL_WEBHOOK_CONFIGURATION": f"{setup.release}-sundial-webhook",
        "SUNDIAL_WEBHOOK_CERT_SECRET": f"{setup.release}-sundial-webhook-tls",
        "SUNDIAL_POD_NAMESPACE": setup.namespace,
    }


def webhook_certificate_is_in_place(setup: Installed) -> None:
    """The operator filled the chart's Secret and injected the CA into the chart's configuration."""
    cluster = setup.cluster
    deadline = time.monotonic() + 20
    while True:
        secret = json.loads(
            cluster.kubectl(
                "get", "secret", f"{setup.release}-sundial-webhook-tls", "-n", setup.namespace, "-o", "json"
            ).stdout
        )
        config = json.loads(
            cluster.kubectl(
                "get", "validatingwebhookconfiguration", f"{setup.release}-sundial-webhook", "-o", "json"
            ).stdout
        )
        bundle = config["webhooks"][0]["clientConfig"].get("caBundle")
        if bundle and {"tls.crt", "tls.key"} <= set(secret.get("data") or {}):
            return
        assert time.monotonic() < deadline, (
            f"secret keys {sorted(secret.get('data') or {})}, caBundle {bool(bundle)}"
        )
        time.sleep(0.5)


def test_cluster_wide_rbac_is_sufficient_and_minimal(
    install: Callable[[bool], Installed], receiver: Receiver, tmp_path: Path
) -> None:
    setup = install(False)
    cluster, kc = setup.cluster, setup.kubeconfig
    expected = [
        *expect(NEEDED, setup.watched, allowed=True),
        *expect(NEEDED, setup.other, allowed=True),
        *expect(DENIED, setup.watched, allowed=False),
        *expect(KOPF_CLUSTER, None, allowed=True),
        *expect(DENIED_CLUSTER, None, allowed=False),
        *webhook_access(setup.namespace, setup.release),
    ]
    assert cluster.wrong_answers(kc, expected) == []

    with running_operator(kubeconfig=kc, env=operator_env(tmp_path, setup, ""), log_dir=tmp_path) as operator:
        run_jobs(setup, operator, receiver)
        webhook_certificate_is_in_place(setup)


def test_namespaced_rbac_is_sufficient_and_confined(
    install: Callable[[bool], Installed], receiver: Receiver, tmp_path: Path
) -> None:
    setup = install(True)
    cluster, kc = setup.cluster, setup.kubeconfig
    expected = [
        *expect(NEEDED, setup.watched, allowed=True),
        *expect(DENIED, setup.watched, allowed=False),
        *expect(KOPF_CLUSTER + DENIED_CLUSTER, None, allowed=False),
        Access("list", "cronconfigs.sundial.io", "", None, allowed=False),
        *webhook_access(setup.namespace, setup.release),
    ]
    expected += expect(NEEDED, setup.other, allowed=False)  # outside watchNamespaces: nothing at all
    expected += expect(
        [("get", "secrets", ""), ("list", "cronconfigs.sundial.io", "")], "default", allowed=False
    )
    assert cluster.wrong_answers(kc, expected) == []

    # Not just the answer of can-i: the API server refuses the read itself.
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "elsewhere", "namespace": setup.other},
            "stringData": {"token": "not-yours"},
        }
    )
    denied = cluster.kubectl("get", "secret", "elsewhere", "-n", setup.other, kubeconfig=kc, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    cluster.apply(
        {
            "apiVersion": "sundial.io/v1alpha1",
            "kind": "CronConfig",
            "metadata": {"name": "unwatched", "namespace": setup.other},
            "spec": {"schedule": "*/2 * * * * *", "job": {"handler": {"name": "sundial.echo"}}},
        }
    )

    with running_operator(
        kubeconfig=kc, env=operator_env(tmp_path, setup, setup.watched), log_dir=tmp_path
    ) as operator:
        run_jobs(setup, operator, receiver)
        webhook_certificate_is_in_place(setup)
    unwatched = json.loads(
        cluster.kubectl("get", "cronconfig", "unwatched", "-n", setup.other, "-o", "json").stdout
    )
    assert not (unwatched.get("status") or {}).get("lastRun"), "a CronConfig outside watchNamespaces ran"
