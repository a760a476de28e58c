"""The CronConfig CRD: the contract's names and columns, a documented structural schema, and no drift.

The CRD and the pydantic models in ``sundial.models`` describe the same object twice; the tests at
the end pin them together (fields, limits, defaults and the CEL rules' verdicts and messages).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

import sundial.crd
from sundial import models

ROOT = Path(__file__).resolve().parents[2]
CANONICAL = ROOT / "crds" / "cronconfigs.sundial.io.yaml"
SHIPPED = ROOT / "operator" / "sundial" / "crd" / "cronconfigs.sundial.io.yaml"

Node = dict[str, Any]


@pytest.fixture(scope="module")
def crd() -> Node:
    document: Node = yaml.safe_load(CANONICAL.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def version(crd: Node) -> Node:
    (only,) = crd["spec"]["versions"]
    result: Node = only
    return result


@pytest.fixture(scope="module")
def schema(version: Node) -> Node:
    result: Node = version["schema"]["openAPIV3Schema"]
    return result


def walk(node: Node, path: str = "") -> Iterator[tuple[str, Node]]:
    """Every schema node with its path: ``.spec.job.http.headersFrom[].name``."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


# --- the file itself ----------------------------------------------------------------------------


def test_package_ships_an_identical_copy() -> None:
    assert SHIPPED.read_bytes() == CANONICAL.read_bytes(), "run: cp crds/*.yaml operator/sundial/crd/"
    assert sundial.crd.text() == CANONICAL.read_text(encoding="utf-8")
    assert sundial.crd.load() == yaml.safe_load(CANONICAL.read_text(encoding="utf-8"))


def test_is_a_single_document() -> None:
    assert len(list(yaml.safe_load_all(CANONICAL.read_text(encoding="utf-8")))) == 1


# --- the contract -------------------------------------------------------------------------------


def test_names_follow_the_contract(crd: Node, version: Node) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "cronconfigs.sundial.io"
    spec = crd["spec"]
    assert spec["group"] == "sundial.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "CronConfig",
        "listKind": "CronConfigList",
        "plural": "cronconfigs",
        "singular": "cronconfig",
        "shortNames": ["ccfg"],
        "categories": ["sundial"],
    }
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_printer_columns_follow_the_contract(version: Node) -> None:
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("SCHEDULE", "string", ".spec.schedule"),
        ("TIMEZONE", "string", ".spec.timeZone"),
        ("SUSPEND", "boolean", ".spec.suspend"),
        ("LAST STATUS", "string", ".status.lastRun.status"),
        ("LAST RUN", "date", ".status.lastScheduleTime"),
        ("NEXT RUN", "string", ".status.nextScheduleTime"),
        ("AGE", "date", ".metadata.creationTimestamp"),
    ]


def test_printer_columns_point_at_existing_fields(version: Node, schema: Node) -> None:
    for column in version["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".metadata."):
            continue
        node = schema
        for part in column["jsonPath"].lstrip(".").split("."):
            node = node["properties"][part]
        expected = {"string": "string", "boolean": "boolean", "date": "string"}[column["type"]]
        assert node["type"] == expected, column["name"]
        if column["type"] == "date":
            assert node["format"] == "date-time", column["name"]


def test_run_statuses_and_triggers_follow_the_contract(schema: Node) -> None:
    last_run = schema["properties"]["status"]["properties"]["lastRun"]["properties"]
    assert last_run["status"]["enum"] == [
        "Pending",
        "Running",
        "Succeeded",
        "Failed",
        "Skipped",
        "TimedOut",
        "Cancelled",
    ]
    assert last_run["trigger"]["enum"] == ["Schedule", "Manual", "Retry", "CatchUp"]
    assert last_run["status"]["enum"] == [s.value for s in models.RunStatus]
    assert last_run["trigger"]["enum"] == [t.value for t in models.Trigger]


def test_status_has_the_contract_fields(schema: Node) -> None:
    status = schema["properties"]["status"]["properties"]
    assert {
        "observedGeneration",
        "conditions",
        "nextScheduleTime",
        "lastScheduleTime",
        "lastSuccessfulTime",
        "lastFailureTime",
        "lastRun",
        "active",
    } <= set(status)
    for name in ("nextScheduleTime", "lastScheduleTime", "lastSuccessfulTime", "lastFailureTime"):
        assert status[name] == status[name] | {"type": "string", "format": "date-time"}
    condition = status["conditions"]["items"]["properties"]
    assert {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"} <= set(
        condition
    )
    assert {
        "id",
        "scheduledTime",
        "startTime",
        "completionTime",
        "status",
        "attempt",
        "trigger",
        "message",
    } <= set(status["lastRun"]["properties"])
    assert {"id", "scheduledTime", "startTime", "replica"} <= set(status["active"]["items"]["properties"])


# --- a structural, documented, bounded schema -----------------------------------------------------


def test_every_field_has_a_description(schema: Node) -> None:
    undocumented = [
        path or "<root>" for path, node in walk(schema) if not node.get("description", "").strip()
    ]
    # Map values ({}) are documented by their parent; the API server forbids a description on metadata.
    undocumented = [p for p in undocumented if not p.endswith("{}") and p != ".metadata"]
    assert undocumented == []
    assert set(schema["properties"]["metadata"]) == {"type"}


def test_defaults_are_documented(schema: Node) -> None:
    """``kubectl explain`` does not show defaults, so each description states its own."""
    undocumented = [
        path
        for path, node in walk(schema)
        if "default" in node and "default" not in node["description"].lower()
    ]
    assert undocumented == []


def test_schema_is_structural(schema: Node) -> None:
    for path, node in walk(schema):
        if "type" not in node:
            assert node.get("x-kubernetes-preserve-unknown-fields") is True, path
        if "properties" in node or "additionalProperties" in node:
            assert node["type"] == "object", path
        for name in node.get("required", []):
            assert name in node["properties"], f"{path}: required {name} is not a property"
        for key in node.get("x-kubernetes-list-map-keys", []):
            assert key in node["items"].get("required", []), f"{path}: map key {key} must be required"
        for forbidden in ("anyOf", "oneOf", "allOf", "not", "$ref", "additionalItems"):
            assert forbidden not in node, f"{path}: {forbidden} is not allowed here"


def test_strings_lists_and_maps_are_bounded(schema: Node) -> None:
    """Bounds keep CEL cost estimates low and reject absurd objects early."""
    spec = schema["properties"]["spec"]
    status = schema["properties"]["status"]
    for top, root in ((".spec", spec), (".status", status)):
        for path, node in walk(root, top):
            kind = node.get("type")
            if kind == "string" and "enum" not in node and node.get("format") != "date-time":
                assert "maxLength" in node, path
            if kind == "array":
                assert "maxItems" in node, path
            if kind == "object" and "additionalProperties" in node:
                assert "maxProperties" in node, path


def test_free_form_fields_preserve_unknown_fields(schema: Node) -> None:
    spec = schema["properties"]["spec"]["properties"]
    http = spec["job"]["properties"]["http"]["properties"]
    template = spec["job"]["properties"]["template"]
    assert spec["context"]["x-kubernetes-preserve-unknown-fields"] is True
    assert http["body"]["x-kubernetes-preserve-unknown-fields"] is True
    assert "type" not in http["body"], "body is an object or a string"
    assert template["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"] is True
    assert template["properties"]["metadata"]["x-kubernetes-preserve-unknown-fields"] is True


def test_enums_and_defaults_of_the_brief(schema: Node) -> None:
    spec = schema["properties"]["spec"]["properties"]
    assert spec["concurrencyPolicy"]["enum"] == ["Allow", "Forbid", "Replace"]
    assert spec["concurrencyPolicy"]["default"] == "Forbid"
    assert spec["missedRunPolicy"]["enum"] == ["Skip", "RunOnce", "RunAll"]
    assert spec["missedRunPolicy"]["default"] == "RunOnce"
    assert spec["timeZone"]["default"] == "UTC"
    assert spec["schedule"]["maxLength"] == 256
    assert spec["runAt"]["format"] == "date-time"
    http = spec["job"]["properties"]["http"]["properties"]
    assert http["successStatusCodes"]["default"] == [200, 201, 202, 204]
    assert http["method"]["default"] == "POST"


# --- CEL rules ------------------------------------------------------------------------------------


def rules(schema: Node) -> Iterator[tuple[str, Node, Node]]:
    for path, node in walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, node, rule


def test_cel_rules_have_messages_and_only_name_declared_fields(schema: Node) -> None:
    found = list(rules(schema))
    assert {path for path, _, _ in found} >= {
        ".spec",
        ".spec.job",
        ".spec.job.sql",
        ".spec.job.fanout.source",
        ".spec.job.fanout.each",
    }
    for path, node, rule in found:
        assert rule.get("message"), path
        assert set(rule) <= {"rule", "message"}, f"{path}: keep to fields every apiserver accepts"
        for name in re.findall(r"self\.(\w+)", rule["rule"]):
            assert name in node["properties"], f"{path}: rule names unknown field {name}"


def cel(rule: str, value: Node) -> bool:
    """Evaluates the small CEL subset the CRD uses: has(), ternaries, + == != <= || and !."""
    expression = re.sub(r"has\(self\.(\w+)\)", r'("\1" in self)', rule)
    expression = re.sub(r'\((\("\w+" in self\)) \? (\d+) : (\d+)\)', r"(\2 if \1 else \3)", expression)
    expression = re.sub(r"self\.(\w+)", r'self["\1"]', expression)
    expression = expression.replace("||", " or ").replace("&&", " and ")
    expression = re.sub(r"!(?!=)", " not ", expression)
    assert "?" not in expression, f"extend cel() for: {rule}"
    result = eval(expression, {"__builtins__": {}}, {"self": value})
    assert isinstance(result, bool)
    return result


def apply_defaults(node: Node, value: Any) -> Any:
    """What the API server does before validation: fill in defaults, then recurse into them."""
    value = copy.deepcopy(value)
    if isinstance(value, dict) and "properties" in node:
        for name, child in node["properties"].items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
        for name, child in node["properties"].items():
            if name in value:
                value[name] = apply_defaults(child, value[name])
    elif isinstance(value, list) and "items" in node:
        value = [apply_defaults(node["items"], item) for item in value]
    return value


def cel_errors(node: Node, value: Any, path: str) -> list[str]:
    errors: list[str] = []
    if isinstance(value, dict):
        for rule in node.get("x-kubernetes-validations", []):
            if not cel(rule["rule"], value):
                errors.append(f"{path}: {rule['message']}")
        for name, child in node.get("properties", {}).items():
            if name in value:
                errors += cel_errors(child, value[name], f"{path}.{name}")
    elif isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            errors += cel_errors(node["items"], item, f"{path}[{index}]")
    return errors


def model_rule_errors(spec: Node) -> list[str]:
    """The model's errors that correspond to CEL rules (not to per-field checks)."""
    try:
        models.CronConfigSpec.model_validate(spec)
    except pydantic.ValidationError as err:
        return [
            f"{models.format_location(e['loc'])}: {e['msg']}"
            for e in err.errors()
            if e["type"] in {"exactly_one", "backoff"}
        ]
    return []


HTTP = {"url": "https://example.com/hook"}
SQL = {"connectionSecretRef": {"name": "db", "key": "url"}, "query": "SELECT 1"}
HANDLER = {"name": "reports.nightly"}
TEMPLATE = {"spec": {"template": {"spec": {"containers": [], "restartPolicy": "Never"}}}}
FANOUT = {"source": {"http": {**HTTP, "itemsPath": "$.items"}}, "each": {"handler": HANDLER}}

CEL_CASES: dict[str, Node] = {
    "http": {"schedule": "@hourly", "job": {"http": HTTP}},
    "sql": {"schedule": "@hourly", "job": {"sql": SQL}},
    "template": {"schedule": "@hourly", "job": {"template": TEMPLATE}},
    "handler": {"runAt": "2030-01-01T00:00:00Z", "job": {"handler": HANDLER}},
    "fanout": {"schedule": "@hourly", "job": {"fanout": FANOUT}},
    "fanout sql to http": {
        "schedule": "@hourly",
        "job": {"fanout": {"source": {"sql": SQL}, "each": {"http": HTTP}}},
    },
    "neither schedule nor runAt": {"job": {"http": HTTP}},
    "schedule and runAt": {"schedule": "@daily", "runAt": "2030-01-01T00:00:00Z", "job": {"http": HTTP}},
    "no job": {"schedule": "@hourly", "job": {}},
    "two jobs": {"schedule": "@hourly", "job": {"http": HTTP, "handler": HANDLER}},
    "query and queryFrom": {
        "schedule": "@hourly",
        "job": {"sql": {**SQL, "queryFrom": {"secretKeyRef": {"name": "q", "key": "sql"}}}},
    },
    "no query": {"schedule": "@hourly", "job": {"sql": {"connectionSecretRef": SQL["connectionSecretRef"]}}},
    "two sources, no each": {
        "schedule": "@hourly",
        "job": {"fanout": {"source": {"http": HTTP, "handler": HANDLER}, "each": {}}},
    },
    "two eaches": {
        "schedule": "@hourly",
        "job": {"fanout": {"source": {"sql": SQL}, "each": {"http": HTTP, "handler": HANDLER}}},
    },
    "source sql without query": {
        "schedule": "@hourly",
        "job": {
            "fanout": {
                "source": {"sql": {"connectionSecretRef": SQL["connectionSecretRef"]}},
                "each": {"handler": HANDLER},
            }
        },
    },
    "backoff above its cap": {"schedule": "@hourly", "retry": {"backoffSeconds": 900}, "job": {"http": HTTP}},
    "item backoff above its cap": {
        "schedule": "@hourly",
        "job": {"fanout": {**FANOUT, "itemRetry": {"backoffSeconds": 60, "maxBackoffSeconds": 30}}},
    },
}
VALID = ["http", "sql", "template", "handler", "fanout", "fanout sql to http"]


@pytest.mark.parametrize("case", CEL_CASES)
def test_cel_rules_and_model_validators_agree(schema: Node, case: str) -> None:
    spec_schema = schema["properties"]["spec"]
    spec = CEL_CASES[case]
    crd_verdict = cel_errors(spec_schema, apply_defaults(spec_schema, spec), "spec")
    assert model_rule_errors(spec) == crd_verdict
    assert bool(crd_verdict) == (case not in VALID)


# --- the models are pinned to the schema ---------------------------------------------------------


def _resolve(node: Node, defs: Node) -> Node:
    """A pydantic JSON-schema node with ``$ref`` and ``X | None`` unwrapped."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = {**_resolve(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            node = {**_resolve(options[0], defs), **rest}
    return node


CONSTRAINTS = (
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "enum",
)


def pin(model: Node, crd: Node, defs: Node, path: str) -> list[str]:
    """Differences between a model's JSON schema and the CRD schema, as readable lines."""
    model = _resolve(model, defs)
    problems: list[str] = []
    if "type" not in crd:  # free-form (body): the model may narrow it
        return problems
    if crd["type"] != model.get("type"):
        return [f"{path}: type {crd['type']} in the CRD, {model.get('type')} in the model"]
    for key in CONSTRAINTS:
        if crd.get(key) != model.get(key):
            problems.append(f"{path}: {key} {crd.get(key)!r} in the CRD, {model.get(key)!r} in the model")
    if crd["type"] == "string" and crd.get("format") != model.get("format"):
        problems.append(
            f"{path}: format {crd.get('format')!r} in the CRD, {model.get('format')!r} in the model"
        )
    if model.get("default") is not None and model["default"] != crd.get("default"):
        problems.append(
            f"{path}: default {crd.get('default')!r} in the CRD, {model['default']!r} in the model"
        )
    if crd["type"] == "object":
        if crd.get("x-kubernetes-preserve-unknown-fields") and "properties" not in crd:
            return problems
        crd_properties, model_properties = crd.get("properties", {}), model.get("properties", {})
        if set(crd_properties) != set(model_properties):
            problems.append(
                f"{path}: fields {sorted(crd_properties)} in the CRD, {sorted(model_properties)} in the model"
            )
        if set(crd.get("required", [])) != set(model.get("required", [])):
            problems.append(
                f"{path}: required {crd.get('required')} in the CRD, {model.get('required')} in the model"
            )
        for name in set(crd_properties) & set(model_properties):
            problems += pin(model_properties[name], crd_properties[name], defs, f"{path}.{name}")
        if isinstance(crd.get("additionalProperties"), dict):
            problems += pin(model["additionalProperties"], crd["additionalProperties"], defs, f"{path}{{}}")
    if crd["type"] == "array":
        problems += pin(model["items"], crd["items"], defs, f"{path}[]")
    return problems


@pytest.mark.parametrize(
    ("name", "model"), [("spec", models.CronConfigSpec), ("status", models.CronConfigStatus)]
)
def test_models_match_the_schema(schema: Node, name: str, model: type[pydantic.BaseModel]) -> None:
    generated = model.model_json_schema(by_alias=True, mode="validation")
    assert pin(generated, schema["properties"][name], generated.get("$defs", {}), f".{name}") == []


def test_status_has_no_defaults(schema: Node) -> None:
    """The operator writes status whole; defaults there would only hide a missing write."""
    assert [path for path, node in walk(schema["properties"]["status"]) if "default" in node] == []


@pytest.mark.parametrize("case", VALID)
def test_model_defaults_are_the_crd_defaults(schema: Node, case: str) -> None:
    """A minimal spec defaulted by the API server reads back exactly as the model fills it in."""
    spec_schema = schema["properties"]["spec"]
    minimal = CEL_CASES[case]
    parsed = models.CronConfigSpec.model_validate(minimal)
    assert parsed.model_dump(mode="json", by_alias=True, exclude_none=True) == apply_defaults(
        spec_schema, minimal
    )


def test_every_crd_default_is_exercised(schema: Node) -> None:
    """Guards the test above: each default sits on a path one of the minimal specs reaches."""
    reached: set[str] = set()
    spec_schema = schema["properties"]["spec"]
    for case in VALID:
        defaulted = apply_defaults(spec_schema, CEL_CASES[case])
        reached |= {path for path, _ in _paths(defaulted, ".spec")}
    defaults = {path.replace("[]", "") for path, node in walk(spec_schema, ".spec") if "default" in node}
    assert defaults - reached == set()


def _paths(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for name, child in value.items():
            yield from _paths(child, f"{path}.{name}")
