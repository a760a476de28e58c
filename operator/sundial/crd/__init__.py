"""The CronConfig CRD shipped inside the package: a byte-identical copy of ``crds/`` at the repo root.

Lets the operator, the CLI and tests read the CRD without a source checkout.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import yaml

FILENAME = "cronconfigs.sundial.io.yaml"


def text() -> str:
    """The CRD manifest as shipped."""
    return importlib.resources.files(__name__).joinpath(FILENAME).read_text(encoding="utf-8")


def load() -> dict[str, Any]:
    """The CRD manifest as a dict."""
    document: dict[str, Any] = yaml.safe_load(text())
    return document
