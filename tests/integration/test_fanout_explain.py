"""``kubectl explain`` documents the fan-out job type from the CRD, as the real API server publishes it.

The descriptions are read from ``crds/cronconfigs.sundial.io.yaml`` and looked for in kubectl's
output (whitespace-normalised: kubectl wraps and indents them), so a field whose description is
lost on the way (a YAML anchor that drops it, a schema the server prunes) fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.kube import Kubectl, wait_until
from tests.support.services import ROOT

pytestmark = pytest.mark.k8s

CRD = ROOT / "crds" / "cronconfigs.sundial.io.yaml"


def _schema_at(path: str) -> dict[str, Any]:
    """The CRD schema node of ``path`` (``spec.job.fanout.each.http``)."""
    crd = yaml.safe_load(CRD.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v.get("storage")]
    node: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    for name in path.split("."):
        node = node["properties"][name]
    return node


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def published(kubectl: Kubectl) -> Kubectl:
    """The API server publishes a CRD's OpenAPI a moment after it is Established: wait for it."""
    newest = _schema_at("spec.job.fanout.itemKey")["description"]

    def ready() -> bool:
        proc = kubectl.run("explain", "cronconfigs.spec.job.fanout.itemKey", check=False)
        return proc.returncode == 0 and _flat(newest) in _flat(proc.stdout)

    wait_until(ready, timeout=60, interval=0.5, what="the CRD's fan-out fields in kubectl explain")
    return kubectl


def explain(kubectl: Kubectl, path: str) -> str:
    return _flat(kubectl.run("explain", f"cronconfigs.{path}").stdout)


@pytest.mark.parametrize(
    "path",
    [
        "spec.job.fanout",
        "spec.job.fanout.itemKey",
        "spec.job.fanout.parallelism",
        "spec.job.fanout.itemRetry",
        "spec.job.fanout.source",
        "spec.job.fanout.source.http",
        "spec.job.fanout.source.http.itemsPath",
        "spec.job.fanout.each",
        "spec.job.fanout.each.http",
        "spec.job.fanout.each.handler",
    ],
)
def test_explain_prints_the_crd_description(published: Kubectl, path: str) -> None:
    node = _schema_at(path)
    out = explain(published, path)
    assert _flat(node["description"]) in out, f"kubectl explain cronconfigs.{path}:\n{out}"
    # and the description of every field below it, as kubectl lists them under FIELDS
    for name, child in node.get("properties", {}).items():
        assert name in out, f"{path}.{name} is not listed"
        assert _flat(child["description"]) in out, f"{path}.{name}: description missing:\n{out}"


def test_explain_shows_the_fanout_fields_and_their_types(published: Kubectl) -> None:
    kubectl = published
    out = explain(kubectl, "spec.job.fanout")
    assert "FIELD: fanout <Object>" in out
    for field in ("each <Object> -required-", "source <Object> -required-", "itemKey <string>"):
        assert field in out, field
    assert "parallelism <integer>" in out and "itemRetry <Object>" in out
    out = explain(kubectl, "spec.job.fanout.source.http.itemsPath")
    assert "FIELD: itemsPath <string>" in out
    assert "e.g. $.items" in out and "The default, $, is the body itself." in out
    out = explain(kubectl, "spec.job.fanout.each.http")
    assert "{{ item.id }}" in out and "X-Sundial-Item" in out
    for field in ("url <string> -required-", "headers <map[string]string>", "body <Object>"):
        assert field in out, field


def test_explain_of_the_item_counts_in_status(published: Kubectl) -> None:
    kubectl = published
    node = _schema_at("status.active")["items"]["properties"]["items"]
    out = explain(kubectl, "status.active.items")
    assert _flat(node["description"]) in out
    for name, child in node["properties"].items():
        assert f"{name} <integer>" in out
        assert _flat(child["description"]) in out
