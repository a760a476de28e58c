"""The ``@sundial.job("name")`` registry of Python handlers, filled by importing SUNDIAL_HANDLERS."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_handlers: dict[str, Callable[..., Any]] = {}


def job(name: str) -> Callable[[F], F]:
    """Register a sync or async callable as the handler named ``name``."""

    def register(fn: F) -> F:
        existing = _handlers.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"handler {name!r} is already registered by {existing.__module__}")
        _handlers[name] = fn
        return fn

    return register


def lookup(name: str) -> Callable[..., Any] | None:
    return _handlers.get(name)


def names() -> list[str]:
    return sorted(_handlers)


def load(modules: Iterable[str]) -> None:
    """Import handler modules; an import error stops the operator at start, not at 2 a.m."""
    importlib.import_module("sundial.jobs.builtin")
    for module in modules:
        importlib.import_module(module)
