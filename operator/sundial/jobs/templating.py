"""Item fields into ``each.http``: Jinja2's immutable sandbox, so a CronConfig never runs code here.

The sandbox refuses attribute access to internals (``__class__``, ``mro``), calls of unsafe methods
and changes to the data; ``StrictUndefined`` turns a misspelt field into an error naming it rather
than an empty string in a URL. Templates are compiled once per text and cached.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RESULT = 65536
"""Longest string or list one ``*`` may make; and a rendered template is cut off there as well."""
MAX_EXPONENT = 1000
MAX_STEPS = 100_000
"""Loop iterations over ``range`` one rendering may take, nested loops together."""
_WIDE = re.compile(r"%[-+ #0]*(\d{6,}|\*)|\{[^{}]*:[^{}]*\d{6,}[^{}]*\}")
"""A field width of a million or more in a format string (``'%1000000d'``, ``'{:>1000000}'``)."""
_STEPS: contextvars.ContextVar[list[int]] = contextvars.ContextVar("sundial_template_steps")


def _check_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_RESULT:
            raise SecurityError(f"a number larger than {MAX_RESULT} as an argument is refused")


def _bounded_range(*args: int) -> Iterator[int]:
    """``range`` that counts against the rendering's loop budget (a nested loop multiplies)."""
    _check_args(args, {})
    steps = _STEPS.get(None)
    for i in range(*args):
        if steps is not None:
            steps[0] -= 1
            if steps[0] < 0:
                raise SecurityError(f"the template loops more than {MAX_STEPS} times")
        yield i


def _bounded_filter(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_args(args[1:], kwargs)  # the first is the value filtered (or the context)
        return fn(*args, **kwargs)

    return bounded


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's sandbox, with ``*`` and ``**`` bounded: ``{{ 'x' * 10**10 }}`` must not take the
    operator's memory. Intercepted operators are also never folded at compile time, so a check in
    the webhook cannot be made to allocate either."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _bounded_range
        self.filters = {name: _bounded_filter(fn) for name, fn in self.filters.items()}

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Calls with a huge number (``'x'.ljust(10**9)``) or a format with a huge width are refused."""
        _check_args(args, kwargs)
        bound = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(bound, str) and _WIDE.search(bound):
            raise SecurityError("a format field width of a million or more is refused")
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            if isinstance(left, str) and _WIDE.search(left):
                raise SecurityError("a format field width of a million or more is refused")
            return left % right
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
    token = _STEPS.set([MAX_STEPS])
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
    finally:
        _STEPS.reset(token)
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
