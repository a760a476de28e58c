"""The CronConfig resource's API coordinates and the annotations sundial reads: one place for all."""

from __future__ import annotations

GROUP = "sundial.io"
VERSION = "v1alpha1"
PLURAL = "cronconfigs"
KIND = "CronConfig"
API_VERSION = f"{GROUP}/{VERSION}"

RUN_NOW = "sundial.io/run-now"
"""Annotation: each new value fires one run with trigger ``Manual``."""
