"""The Helm chart (charts/sundial), rendered with the real helm binary.

Offline checks: layout and conventions, the CRD copy, the values schema and comments, `helm lint
--strict` and `helm template` for every documented option, what each option renders, least-privilege
RBAC, the generated manifests/install.yaml. Tests marked `k8s` install the chart into the local
control plane (no kubelet, so never `--wait`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.services import HACK, ROOT, ControlPlane

CHART = ROOT / "charts" / "sundial"
CANONICAL_CRD = ROOT / "crds" / "cronconfigs.sundial.io.yaml"
CHART_CRD = CHART / "files" / "crd-cronconfigs.yaml"
INSTALL_YAML = ROOT / "manifests" / "install.yaml"
IN_CI = os.environ.get("CI", "").lower() == "true"

Obj = dict[str, Any]

# Every documented option (values.yaml), alone: each must lint --strict and render.
OPTIONS: dict[str, list[str]] = {
    "defaults": [],
    "watch-namespaces": ["watchNamespaces={team-a,team-b}"],
    "existing-secrets": ["database.existingSecret=sundial-db", "redis.existingSecret=sundial-redis"],
    "plain-urls": ["database.url=postgresql+psycopg://u:p@db:5432/s", "redis.url=redis://redis:6379/0"],
    "sqlite-url": ["database.url=sqlite:////var/lib/sundial/history.db"],
    "dev-databases": ["dev.postgresql.enabled=true", "dev.redis.enabled=true"],
    "dev-postgresql-only": ["dev.postgresql.enabled=true"],
    "webhook-self-signed": ["webhook.enabled=true"],
    "webhook-self-signed-namespaced": ["webhook.enabled=true", "watchNamespaces={team-a}"],
    "webhook-cert-manager": ["webhook.enabled=true", "webhook.certManager.enabled=true"],
    "webhook-cert-manager-issuer": [
        "webhook.enabled=true",
        "webhook.certManager.enabled=true",
        "webhook.certManager.issuerRef.name=corp-ca",
        "webhook.certManager.issuerRef.kind=ClusterIssuer",
    ],
    "webhook-ignore": ["webhook.enabled=true", "webhook.failurePolicy=Ignore"],
    "service-monitor": ["metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom"],
    "no-metrics-service": ["metrics.service.enabled=false"],
    "grafana-dashboard": ["grafanaDashboard.enabled=true"],
    "no-crds": ["crds.enabled=false"],
    "crds-not-kept": ["crds.keep=false"],
    "no-rbac": ["rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=existing"],
    "no-pdb": ["podDisruptionBudget.enabled=false"],
    "pdb-min-available": ["podDisruptionBudget.minAvailable=50%"],
    "no-migration": ["migration.enabled=false", "database.existingSecret=db", "redis.existingSecret=rd"],
    "replicas": ["replicaCount=3", "database.existingSecret=db", "redis.existingSecret=rd"],
    "image-digest": ["image.digest=sha256:" + "ab" * 32],
    "image-tag": ["image.repository=registry.example/sundial", "image.tag=dev", "image.pullPolicy=Always"],
    "handlers": [
        "handlers={reports.jobs,billing.jobs}",
        "statusQPS=20",
        "allowLinkLocal=true",
        "verbose=true",
    ],
    "extras": [
        "extraEnv[0].name=TZ",
        "extraEnv[0].value=UTC",
        "extraVolumes[0].name=cfg",
        "extraVolumes[0].configMap.name=cfg",
        "extraVolumeMounts[0].name=cfg",
        "extraVolumeMounts[0].mountPath=/etc/cfg",
        "podAnnotations.a=b",
        "podLabels.team=x",
        "nodeSelector.disk=ssd",
        "tolerations[0].operator=Exists",
        "priorityClassName=high",
        "imagePullSecrets[0].name=regcred",
        "serviceAccount.annotations.iam=role",
    ],
    "no-topology-spread": ["topologySpreadConstraints=null"],
    "name-overrides": ["nameOverride=cron", "fullnameOverride=my-sundial"],
}

# A render with every optional part switched on at once (used for the server-side dry run).
EVERYTHING = [
    "webhook.enabled=true",
    "webhook.certManager.enabled=true",
    "metrics.serviceMonitor.enabled=true",
    "grafanaDashboard.enabled=true",
    "dev.postgresql.enabled=true",
    "dev.redis.enabled=true",
]


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary hack/build-binaries.sh builds (cached); no cluster needed."""
    built = subprocess.run([str(HACK / "build-binaries.sh")], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        message = f"hack/build-binaries.sh failed:\n{built.stderr[-3000:]}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return Path(built.stdout.strip()) / "helm"


def run_helm(helm: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, check=False, timeout=120, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr if not check else proc.stdout


def set_args(options: list[str]) -> list[str]:
    return [arg for option in options for arg in ("--set", option)]


def render_text(
    helm: Path,
    options: list[str] | None = None,
    *,
    release: str = "sundial",
    namespace: str = "sundial-system",
) -> str:
    return run_helm(
        helm,
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        "1.33.0",
        *set_args(options or []),
    )


def render(
    helm: Path,
    options: list[str] | None = None,
    *,
    release: str = "sundial",
    namespace: str = "sundial-system",
) -> list[Obj]:
    text = render_text(helm, options, release=release, namespace=namespace)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def kinds_and_names(objs: list[Obj]) -> set[tuple[str, str, str]]:
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objs}


def container(deployment: Obj, name: str = "operator") -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def env_of(c: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in c.get("env", [])}


# ------------------------------------------------------------------------------------- layout, metadata


def test_chart_version_and_app_version_are_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "sundial"
    assert chart["appVersion"] == package
    assert chart["version"] == package


def test_templates_are_named_component_kind() -> None:
    names = sorted(p.name for p in (CHART / "templates").iterdir())
    assert {"_helpers.tpl", "NOTES.txt", "crd-cronconfigs.yaml"} <= set(names)
    pattern = re.compile(r"^[a-z]+(-[a-z]+)*-[a-z]+\.yaml$")
    for name in names:
        if name in {"_helpers.tpl", "NOTES.txt"}:
            continue
        assert pattern.match(name), name


def test_each_template_renders_the_kind_its_name_says(helm: Path) -> None:
    """`# Source: sundial/templates/<component>-<kind>.yaml` holds objects of that kind only."""
    text = render_text(helm, [*EVERYTHING, "watchNamespaces={a,b}"]) + render_text(
        helm, ["webhook.enabled=true", "database.url=postgresql://db/s", "redis.url=redis://r"]
    )
    seen: set[str] = set()
    for chunk in text.split("\n---\n"):
        source = re.search(r"^# Source: sundial/templates/(\S+)$", chunk, re.M)
        doc = yaml.safe_load(chunk)
        if not source or not doc:
            continue
        filename = source.group(1)
        seen.add(filename)
        assert filename.removesuffix(".yaml").endswith("-" + doc["kind"].lower()) or (
            filename == "crd-cronconfigs.yaml" and doc["kind"] == "CustomResourceDefinition"
        ), (filename, doc["kind"])
    templates = {p.name for p in (CHART / "templates").glob("*.yaml")}
    assert templates == seen, f"never rendered: {templates - seen}"


def test_every_value_has_a_comment() -> None:
    """Each leaf of values.yaml has a comment line right above it (or at the end of its line).

    Kubernetes objects passed through as a whole (resources, securityContext, ...) are described by
    the comment on the object itself.
    """
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    passthrough = {
        "resources",
        "podSecurityContext",
        "securityContext",
        "topologySpreadConstraints",
        "labels",
        "annotations",
        "issuerRef",
    }
    missing: list[str] = []

    def commented(line_no: int) -> bool:
        above = lines[line_no - 1].strip() if line_no > 0 else ""
        return above.startswith("#") or "#" in lines[line_no]

    def walk(node: yaml.Node, path: str) -> None:
        assert isinstance(node, yaml.MappingNode)
        for key, value in node.value:
            name = f"{path}.{key.value}" if path else key.value
            if isinstance(value, yaml.MappingNode) and value.value and key.value not in passthrough:
                walk(value, name)
            elif not commented(key.start_mark.line):
                missing.append(name)

    root = yaml.compose(text)
    assert root is not None
    walk(root, "")
    assert not missing, f"values without a comment: {missing}"


def test_helpers_truncate_names_to_63_characters(helm: Path) -> None:
    long_release = "a-very-long-release-name-" + "x" * 28  # helm's maximum: 53 characters
    for options in ([], EVERYTHING, ["fullnameOverride=" + "y" * 70]):
        objs = render(helm, [*options, "watchNamespaces={a}"], release=long_release)
        for o in objs:
            assert len(o["metadata"]["name"]) <= 63, o["metadata"]["name"]
            assert not o["metadata"]["name"].endswith("-"), o["metadata"]["name"]
    objs = render(helm, ["webhook.enabled=true"], release=long_release)
    services = [o["metadata"]["name"] for o in find(objs, "Service")]
    assert any(name.endswith("-webhook") for name in services), services  # the suffix survives truncation
    assert any(name.endswith("-metrics") for name in services), services
    deployment = one(objs, "Deployment")
    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"]
        == one(objs, "ServiceAccount")["metadata"]["name"]
    )


# ------------------------------------------------------------------------------------------------- CRD


def test_chart_crd_is_a_byte_copy_of_the_canonical_crd() -> None:
    assert CHART_CRD.read_bytes() == CANONICAL_CRD.read_bytes(), (
        "charts/sundial/files/crd-cronconfigs.yaml drifted from crds/cronconfigs.sundial.io.yaml: "
        "run `make manifests` (hack/render-manifests.sh copies it)"
    )


def test_rendered_crd_is_the_canonical_crd_with_the_keep_annotation(helm: Path) -> None:
    canonical = yaml.safe_load(CANONICAL_CRD.read_text())
    rendered = one(render(helm), "CustomResourceDefinition")
    assert rendered["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
    assert rendered == canonical

    not_kept = one(render(helm, ["crds.keep=false"]), "CustomResourceDefinition")
    assert not_kept == canonical
    assert not find(render(helm, ["crds.enabled=false"]), "CustomResourceDefinition")


# ---------------------------------------------------------------------------------------- values, lint


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_lint_strict_and_template_pass(helm: Path, name: str) -> None:
    options = OPTIONS[name]
    run_helm(helm, "lint", "--strict", str(CHART), *set_args(options))
    assert render(helm, options)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("replicaCount=abc", "replicaCount"),
        ("replicaCoutn=3", "replicaCoutn"),
        ("webhook.enabeld=true", "enabeld"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("webhook.failurePolicy=Maybe", "failurePolicy"),
        ("database.existingSecretkey=url", "existingSecretkey"),
        ("watchNamespaces={Not_A_Namespace}", "watchNamespaces"),
    ],
)
def test_schema_rejects_typos_and_bad_types(helm: Path, option: str, message: str) -> None:
    proc = subprocess.run(
        [str(helm), "template", "x", str(CHART), "--set", option], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr


def test_schema_forbids_unknown_properties_everywhere() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    passthrough = {
        "podSecurityContext",
        "securityContext",
        "affinity",
        "requests",
        "limits",
        "podAnnotations",
        "podLabels",
        "nodeSelector",
        "labels",
        "annotations",
        "global",
    }

    def resolve(node: Obj) -> Obj:
        ref = node.get("$ref")
        if ref:
            target: Any = schema
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            return dict(target)
        return node

    def walk(node: Obj, value: Any, path: str) -> None:
        node = resolve(node)
        if not isinstance(value, dict) or path.rsplit(".", 1)[-1] in passthrough:
            return
        assert node.get("additionalProperties") is False, (
            f"{path or 'values'}: additionalProperties must be false"
        )
        assert set(value) <= set(node["properties"]), (
            f"{path}: not in the schema: {set(value) - set(node['properties'])}"
        )
        for key, sub in value.items():
            walk(node["properties"][key], sub, f"{path}.{key}" if path else key)

    walk(schema, values, "")


# -------------------------------------------------------------------------------------- what renders


def test_defaults_render_the_expected_objects(helm: Path) -> None:
    assert kinds_and_names(render(helm)) == {
        ("CustomResourceDefinition", "", "cronconfigs.sundial.io"),
        ("ServiceAccount", "sundial-system", "sundial"),
        ("ClusterRole", "", "sundial"),
        ("ClusterRoleBinding", "", "sundial"),
        ("Deployment", "sundial-system", "sundial"),
        ("PodDisruptionBudget", "sundial-system", "sundial"),
        ("Service", "sundial-system", "sundial-metrics"),
    }


def test_deployment_is_hardened_probed_and_spread(helm: Path) -> None:
    deployment = one(render(helm, ["database.existingSecret=db", "redis.existingSecret=rd"]), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    assert c["args"] == ["run"]
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    security = c["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/tmp", "/var/lib/sundial"} <= mounts  # writable places on a read-only root
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
    assert pod["serviceAccountName"] == "sundial"
    pdb = one(render(helm), "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_replicas_are_capped_at_one_without_shared_state(helm: Path) -> None:
    def replicas(options: list[str]) -> int:
        return int(one(render(helm, options), "Deployment", "sundial")["spec"]["replicas"])

    assert replicas([]) == 1  # SQLite + in-process locks cannot be shared
    assert replicas(["database.existingSecret=db"]) == 1  # no Redis
    assert replicas(["redis.url=redis://r:6379/0"]) == 1  # no database server
    assert replicas(["database.url=sqlite:////x.db", "redis.url=redis://r"]) == 1
    assert replicas(["database.existingSecret=db", "redis.existingSecret=rd"]) == 2
    assert replicas(["dev.postgresql.enabled=true", "dev.redis.enabled=true", "replicaCount=3"]) == 3
    assert replicas(["replicaCount=0"]) == 0


def test_connection_settings_from_existing_secrets(helm: Path) -> None:
    objs = render(
        helm,
        ["database.existingSecret=pg", "database.existingSecretKey=dsn", "redis.existingSecret=rd"],
    )
    env = env_of(container(one(objs, "Deployment")))
    assert env["SUNDIAL_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "pg", "key": "dsn"}}
    assert env["SUNDIAL_REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "rd", "key": "url"}}
    job = one(objs, "Job")  # an external database: migrated by a pre-install/pre-upgrade hook
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    migrate = job["spec"]["template"]["spec"]["containers"][0]
    assert migrate["args"] == ["migrate"]
    assert env_of(migrate)["SUNDIAL_DATABASE_URL"] == env["SUNDIAL_DATABASE_URL"]
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert migrate["securityContext"]["readOnlyRootFilesystem"] is True
    assert not find(render(helm, ["database.existingSecret=pg", "migration.enabled=false"]), "Job")


def test_connection_settings_defaults_and_plain_values(helm: Path) -> None:
    env = env_of(container(one(render(helm), "Deployment")))
    assert env["SUNDIAL_DATABASE_URL"]["value"] == "sqlite:////var/lib/sundial/sundial.db"
    assert "SUNDIAL_REDIS_URL" not in env
    assert env["SUNDIAL_NAMESPACES"]["value"] == ""
    assert env["SUNDIAL_HTTP_PORT"]["value"] == "8080"
    assert env["SUNDIAL_ALLOW_LINK_LOCAL"]["value"] == "false"
    assert env["SUNDIAL_REPLICA"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}

    objs = render(
        helm,
        [
            "database.url=postgresql+psycopg://u:p@db/s",
            "redis.url=redis://r:6379/1",
            "watchNamespaces={a,b}",
            "handlers={reports.jobs,billing.jobs}",
            "statusQPS=20",
            "allowLinkLocal=true",
        ],
    )
    env = env_of(container(one(objs, "Deployment")))
    assert env["SUNDIAL_DATABASE_URL"]["value"] == "postgresql+psycopg://u:p@db/s"
    assert env["SUNDIAL_REDIS_URL"]["value"] == "redis://r:6379/1"
    assert env["SUNDIAL_NAMESPACES"]["value"] == "a,b"
    assert env["SUNDIAL_HANDLERS"]["value"] == "reports.jobs,billing.jobs"
    assert env["SUNDIAL_STATUS_QPS"]["value"] == "20"
    assert env["SUNDIAL_ALLOW_LINK_LOCAL"]["value"] == "true"


def test_dev_databases(helm: Path) -> None:
    assert not {o["kind"] for o in render(helm)} & {"StatefulSet"}
    assert len(find(render(helm), "Deployment")) == 1  # off by default
    objs = render(helm, ["dev.postgresql.enabled=true", "dev.redis.enabled=true"])
    deployments = {o["metadata"]["name"] for o in find(objs, "Deployment")}
    assert deployments == {"sundial", "sundial-postgresql", "sundial-redis"}
    services = {o["metadata"]["name"]: o for o in find(objs, "Service")}
    assert services["sundial-postgresql"]["spec"]["ports"][0]["port"] == 5432
    assert services["sundial-redis"]["spec"]["ports"][0]["port"] == 6379
    operator = one(objs, "Deployment", "sundial")
    env = env_of(container(operator))
    assert (
        env["SUNDIAL_DATABASE_URL"]["value"]
        == "postgresql+psycopg://sundial:sundial@sundial-postgresql:5432/sundial"
    )
    assert env["SUNDIAL_REDIS_URL"]["value"] == "redis://sundial-redis:6379/0"
    # The dev database is part of the release: an init container migrates, not a pre-install hook.
    assert not find(objs, "Job")
    (init,) = operator["spec"]["template"]["spec"]["initContainers"]
    assert init["args"] == ["migrate"]
    for name in ("sundial-postgresql", "sundial-redis"):
        pod = one(objs, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


def test_metrics_service_service_monitor_and_dashboard(helm: Path) -> None:
    objs = render(helm, ["metrics.serviceMonitor.enabled=true", "grafanaDashboard.enabled=true"])
    service = one(objs, "Service", "sundial-metrics")
    deployment = one(objs, "Deployment")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    monitor = one(objs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == port["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    configmap = one(objs, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["sundial.json"])
    assert dashboard["title"] == "sundial"
    failing = subprocess.run(
        [
            str(helm),
            "template",
            "x",
            str(CHART),
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.service.enabled=false",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failing.returncode != 0
    assert "needs metrics.service.enabled" in failing.stderr


def test_dashboard_shows_fire_lag_runs_by_status_and_active_runs() -> None:
    from prometheus_client import REGISTRY

    import sundial.metrics  # noqa: F401  (registers the operator's metrics)

    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert any("sundial_fire_lag_seconds_bucket" in e and "histogram_quantile" in e for e in exprs)
    assert any("sundial_runs_total" in e and "by (status)" in e for e in exprs)
    assert any("sundial_active_runs" in e for e in exprs)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    exported = {m.name + suffix for m in REGISTRY.collect() for suffix in suffixes.get(m.type, [""])}
    for expr in exprs:
        for metric in re.findall(r"\bsundial_[a-z_]+", expr):
            assert metric in exported, f"the dashboard queries {metric}, which the operator does not export"


def test_webhook_with_a_self_signed_certificate_from_the_operator(helm: Path) -> None:
    assert not find(render(helm), "ValidatingWebhookConfiguration")
    objs = render(helm, ["webhook.enabled=true"])
    config = one(objs, "ValidatingWebhookConfiguration", "sundial-webhook")
    (hook,) = config["webhooks"]
    assert hook["clientConfig"]["service"] == {
        "name": "sundial-webhook",
        "namespace": "sundial-system",
        "path": "/validate-cronconfigs",
        "port": 443,
    }
    assert "caBundle" not in hook["clientConfig"]  # the operator injects its CA; upgrades keep it
    assert hook["rules"][0]["resources"] == ["cronconfigs"]
    assert hook["rules"][0]["apiGroups"] == ["sundial.io"]
    assert hook["sideEffects"] == "None"
    assert hook["failurePolicy"] == "Fail"
    service = one(objs, "Service", "sundial-webhook")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    c = container(one(objs, "Deployment"))
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in c["ports"]
    env = env_of(c)
    assert env["SUNDIAL_WEBHOOK_PORT"]["value"] == "9443"
    assert env["SUNDIAL_WEBHOOK_HOST"]["value"] == "sundial-webhook.sundial-system.svc"
    assert env["SUNDIAL_WEBHOOK_CONFIGURATION"]["value"] == "sundial-webhook"
    assert env["SUNDIAL_WEBHOOK_CERT_SECRET"]["value"] == "sundial-webhook-tls"
    secret = one(objs, "Secret", "sundial-webhook-tls")
    assert "data" not in secret  # filled by the operator, kept by upgrades
    role = one(objs, "Role", "sundial-webhook")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["sundial-webhook-tls"],
            "verbs": ["get", "update", "patch"],
        },
    ]
    cluster_role = one(objs, "ClusterRole", "sundial-webhook")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations"],
            "resourceNames": ["sundial-webhook"],
            "verbs": ["get", "update", "patch"],
        },
    ]
    namespaced = one(
        render(helm, ["webhook.enabled=true", "watchNamespaces={a,b}"]), "ValidatingWebhookConfiguration"
    )
    assert namespaced["webhooks"][0]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]},
    ]


def test_webhook_with_cert_manager(helm: Path) -> None:
    objs = render(helm, ["webhook.enabled=true", "webhook.certManager.enabled=true"])
    config = one(objs, "ValidatingWebhookConfiguration")
    certificate = one(objs, "Certificate", "sundial-webhook")
    assert (
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        == "sundial-system/sundial-webhook"
    )
    assert "sundial-webhook.sundial-system.svc" in certificate["spec"]["dnsNames"]
    issuer = one(objs, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    deployment = one(objs, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == certificate["spec"]["secretName"]
    env = env_of(container(deployment))
    assert env["SUNDIAL_WEBHOOK_CERT_DIR"]["value"] == "/etc/sundial/webhook-tls"
    assert "SUNDIAL_WEBHOOK_CONFIGURATION" not in env
    assert not find(objs, "Secret")
    assert not find(objs, "Role")
    assert [o["metadata"]["name"] for o in find(objs, "ClusterRole")] == ["sundial"]

    objs = render(
        helm,
        [
            "webhook.enabled=true",
            "webhook.certManager.enabled=true",
            "webhook.certManager.issuerRef.name=corp",
            "webhook.certManager.issuerRef.kind=ClusterIssuer",
        ],
    )
    assert not find(objs, "Issuer")
    assert one(objs, "Certificate")["spec"]["issuerRef"] == {
        "name": "corp",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


# ------------------------------------------------------------------------------------------------ RBAC

OPERATOR_RULES = [
    {"apiGroups": ["sundial.io"], "resources": ["cronconfigs"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["sundial.io"], "resources": ["cronconfigs/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
]
KOPF_RULES = [
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
]


def test_rbac_cluster_wide_by_default(helm: Path) -> None:
    objs = render(helm)
    assert one(objs, "ClusterRole", "sundial")["rules"] == OPERATOR_RULES + KOPF_RULES
    binding = one(objs, "ClusterRoleBinding", "sundial")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "sundial",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sundial", "namespace": "sundial-system"}
    ]
    assert not find(objs, "Role") and not find(objs, "RoleBinding")


def test_rbac_watch_namespaces_uses_roles_only(helm: Path) -> None:
    objs = render(helm, ["watchNamespaces={team-a,team-b}"])
    assert not find(objs, "ClusterRole") and not find(objs, "ClusterRoleBinding")
    roles = find(objs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == OPERATOR_RULES
    bindings = find(objs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "sundial", "namespace": "sundial-system"}
        ]
    assert not find(render(helm, ["rbac.create=false"]), "ClusterRole")


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_rbac_has_no_wildcards(helm: Path, name: str) -> None:
    for obj in render(helm, OPTIONS[name]):
        if obj["kind"] not in {"Role", "ClusterRole"}:
            continue
        for rule in obj["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in item for item in rule.get(field, [])), (obj["metadata"]["name"], rule)
            assert "nonResourceURLs" not in rule


# ------------------------------------------------------------------------------ plain manifests, kind


def test_install_yaml_is_generated_from_the_chart(helm: Path) -> None:
    proc = subprocess.run(
        [str(HACK / "render-manifests.sh"), "--stdout"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HELM": str(helm)},
    )
    assert INSTALL_YAML.read_text() == proc.stdout, "manifests/install.yaml is stale: run `make manifests`"
    objs = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    assert kinds_and_names(objs) == {
        ("Namespace", "", "sundial-system"),
        ("CustomResourceDefinition", "", "cronconfigs.sundial.io"),
        ("ServiceAccount", "sundial-system", "sundial"),
        ("ClusterRole", "", "sundial"),
        ("ClusterRoleBinding", "", "sundial"),
        ("Deployment", "sundial-system", "sundial"),
        ("PodDisruptionBudget", "sundial-system", "sundial"),
        ("Service", "sundial-system", "sundial-metrics"),
    }
    assert objs[0]["kind"] == "Namespace"  # kubectl apply creates it before the namespaced objects


def test_kind_up_script() -> None:
    script = HACK / "kind-up.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for step in (
        "kind create cluster",
        "docker build",
        "kind load docker-image",
        "helm upgrade --install",
        "dev.postgresql.enabled=true",
        "dev.redis.enabled=true",
        "manifests/examples",
    ):
        assert step in text, step


# --------------------------------------------------------------------------- the real control plane


class Cluster:
    """kubectl and helm against the local control plane."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.env = plane.env()

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def helm(self, *args: str) -> str:
        return run_helm(self.plane.helm, *args, env=self.env)

    def adopt_crd(self, release: str, namespace: str) -> None:
        """Let the release take over a CRD created outside it (e.g. `kubectl apply -f crds/`)."""
        if self.kubectl("get", "crd", "cronconfigs.sundial.io", check=False).returncode != 0:
            return
        self.kubectl(
            "label", "--overwrite", "crd", "cronconfigs.sundial.io", "app.kubernetes.io/managed-by=Helm"
        )
        self.kubectl(
            "annotate",
            "--overwrite",
            "crd",
            "cronconfigs.sundial.io",
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}",
        )

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        args = ["get", kind, name, "-o", "name"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, check=False).returncode == 0


@pytest.fixture
def cluster(control_plane: ControlPlane) -> Cluster:
    return Cluster(control_plane)


@pytest.fixture
def namespaces(cluster: Cluster) -> Iterator[list[str]]:
    suffix = uuid.uuid4().hex[:6]
    names = [f"chart-{suffix}", f"chart-{suffix}-a", f"chart-{suffix}-b"]
    for name in names:
        cluster.kubectl("create", "namespace", name)
    yield names
    for name in names:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.k8s
def test_helm_install_upgrade_uninstall(cluster: Cluster, namespaces: list[str]) -> None:
    ns, team_a, team_b = namespaces
    release = f"sundial-{ns.removeprefix('chart-')}"
    cluster.adopt_crd(release, ns)
    out = cluster.helm("install", release, str(CHART), "--namespace", ns)
    assert "kubectl get cronconfigs --all-namespaces" in out  # NOTES.txt: what to do next

    def installed() -> set[tuple[str, str, str]]:
        manifest = cluster.helm("get", "manifest", release, "--namespace", ns)
        return kinds_and_names([doc for doc in yaml.safe_load_all(manifest) if doc])

    assert installed() == {
        ("CustomResourceDefinition", "", "cronconfigs.sundial.io"),
        ("ServiceAccount", ns, release),
        ("ClusterRole", "", release),
        ("ClusterRoleBinding", "", release),
        ("Deployment", ns, release),
        ("PodDisruptionBudget", ns, release),
        ("Service", ns, f"{release}-metrics"),
    }
    for kind, namespace, name in installed():
        assert cluster.exists(kind, namespace, name), (kind, namespace, name)

    cluster.helm(
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        ns,
        "--set",
        f"watchNamespaces={{{team_a},{team_b}}}",
        "--set",
        "webhook.enabled=true",
        "--set",
        "webhook.failurePolicy=Ignore",
        "--set",
        "grafanaDashboard.enabled=true",
    )
    after = installed()
    assert ("Role", team_a, release) in after and ("RoleBinding", team_b, release) in after
    assert ("ClusterRole", "", release) not in after
    assert not cluster.exists("clusterrole", "", release)  # removed by the upgrade
    assert cluster.exists("role", team_a, release)
    assert cluster.exists("validatingwebhookconfiguration", "", f"{release}-webhook")
    assert cluster.exists("configmap", ns, f"{release}-dashboard")
    deployment = json.loads(cluster.kubectl("get", "deployment", release, "-n", ns, "-o", "json").stdout)
    assert env_of(container(deployment))["SUNDIAL_NAMESPACES"]["value"] == f"{team_a},{team_b}"

    # The operator's self-signed certificate and CA survive upgrades: the chart never sets them.
    cluster.kubectl(
        "patch",
        "validatingwebhookconfiguration",
        f"{release}-webhook",
        "--type=json",
        "-p",
        json.dumps([{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "Y2E="}]),
    )
    cluster.kubectl(
        "patch",
        "secret",
        f"{release}-webhook-tls",
        "-n",
        ns,
        "-p",
        json.dumps({"data": {"tls.crt": "Y2VydA=="}}),
    )
    cluster.helm(
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        ns,
        "--reuse-values",
        "--set",
        "webhook.timeoutSeconds=7",
    )
    config = json.loads(
        cluster.kubectl("get", "validatingwebhookconfiguration", f"{release}-webhook", "-o", "json").stdout
    )
    assert config["webhooks"][0]["timeoutSeconds"] == 7
    assert config["webhooks"][0]["clientConfig"]["caBundle"] == "Y2E="
    secret = json.loads(
        cluster.kubectl("get", "secret", f"{release}-webhook-tls", "-n", ns, "-o", "json").stdout
    )
    assert secret["data"] == {"tls.crt": "Y2VydA=="}

    cluster.helm("uninstall", release, "--namespace", ns)
    for kind, namespace, name in after - {("CustomResourceDefinition", "", "cronconfigs.sundial.io")}:
        assert not cluster.exists(kind, namespace, name), (kind, namespace, name)
    assert cluster.exists("crd", "", "cronconfigs.sundial.io")  # crds.keep: CronConfigs survive


STUB_CRDS = [
    ("cert-manager.io", "Certificate", "certificates", "v1"),
    ("cert-manager.io", "Issuer", "issuers", "v1"),
    ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors", "v1"),
]


@pytest.mark.k8s
@pytest.mark.parametrize(
    "options",
    [
        [],
        [*EVERYTHING, "watchNamespaces={NS_A,NS_B}"],
        [
            "webhook.enabled=true",
            "database.url=postgresql+psycopg://db/s",
            "redis.existingSecret=r",
            "podDisruptionBudget.minAvailable=1",
        ],
    ],
    ids=["defaults", "everything", "self-signed-webhook-external-db"],
)
def test_every_rendered_object_passes_server_side_dry_run(
    cluster: Cluster, namespaces: list[str], options: list[str]
) -> None:
    ns, team_a, team_b = namespaces
    # Stand-ins for the cert-manager and Prometheus operator CRDs, so their objects can be checked.
    for group, kind, plural, version in STUB_CRDS:
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(stub_crd(group, kind, plural, version)))
    for _, _, plural, _ in STUB_CRDS:
        cluster.kubectl(
            "wait", "--for", "condition=established", "--timeout=30s", f"crd/{plural}.{group_of(plural)}"
        )
    options = [o.replace("NS_A", team_a).replace("NS_B", team_b) for o in options]
    text = render_text(cluster.plane.helm, options, namespace=ns)
    proc = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=text, check=False)
    assert proc.returncode == 0, proc.stderr
    applied = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(applied) == len([doc for doc in yaml.safe_load_all(text) if doc])


def group_of(plural: str) -> str:
    return next(group for group, _, p, _ in STUB_CRDS if p == plural)


def stub_crd(group: str, kind: str, plural: str, version: str) -> Obj:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
