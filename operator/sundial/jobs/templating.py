"""Item fields into ``each.http``: Jinja2's immutable sandbox, so a CronConfig never runs code here.

The sandbox refuses attribute access to internals (``__class__``, ``mro``), calls of unsafe methods
and changes to the data; ``StrictUndefined`` turns a misspelt field into an error naming it rather
than an empty string in a URL. Templates are compiled once per text and cached.
"""

from __future__ import annotations

import functools
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RESULT = 65536
"""Longest string or list one ``*`` may make; and a rendered template is cut off there as well."""
MAX_EXPONENT = 1000


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's sandbox, with ``*`` and ``**`` bounded: ``{{ 'x' * 10**10 }}`` must not take the
    operator's memory. Intercepted operators are also never folded at compile time, so a check in
    the webhook cannot be made to allocate either."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() * right > MAX_RESULT * 4
            ):
                raise SecurityError("a power with more than 65536 digits is refused")
            return left**right
        for seq, times in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(times, int)
                and len(seq) * times > MAX_RESULT
            ):
                raise SecurityError(f"a repeated value longer than {MAX_RESULT} is refused")
        return left * right


_ENV = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False)


class TemplateFailed(ValueError):
    """A template that does not render for this item; the message names the field."""


@functools.lru_cache(maxsize=256)
def _compile(text: str) -> jinja2.Template:
    return _ENV.from_string(text)


def render_text(text: str, values: dict[str, Any], where: str) -> str:
    if "{" not in text:  # nothing to render: the common literal header or URL
        return text
    try:
        rendered = _compile(text).render(values)
    except jinja2.UndefinedError as err:
        raise TemplateFailed(f"{where}: {err}") from None
    except SecurityError as err:
        raise TemplateFailed(f"{where}: refused by the template sandbox: {err}") from None
    except jinja2.TemplateError as err:
        raise TemplateFailed(f"{where}: {type(err).__name__}: {err}") from None
    except (ArithmeticError, TypeError, ValueError) as err:
        raise TemplateFailed(f"{where}: {type(err).__name__}: {err}") from None
    if len(rendered) > MAX_RESULT:
        raise TemplateFailed(f"{where}: renders to more than {MAX_RESULT} characters")
    return rendered


def render(value: Any, values: dict[str, Any], where: str) -> Any:
    """Render every string inside a JSON-like value (a body object, a header map)."""
    if isinstance(value, str):
        return render_text(value, values, where)
    if isinstance(value, dict):
        return {k: render(v, values, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, values, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def check(text: str, where: str) -> str | None:
    """A syntax error of a template, for ``sundial validate`` and the webhook."""
    try:
        _compile(text)
    except jinja2.TemplateSyntaxError as err:
        return f"{where}: template syntax error: {err.message} (line {err.lineno})"
    except Exception as err:  # compiling must never take the webhook down, whatever the text
        return f"{where}: not a usable template: {type(err).__name__}: {err}"
    return None
