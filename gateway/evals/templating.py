"""`{{ ... }}` in assertion values and metric names, as promptfoo renders them with Nunjucks.

Jinja2 (which Nunjucks copies) does the work, sandboxed, with Nunjucks' output rules: `true`
not `True`, numbers as JavaScript writes them, lists as "a,b", null as nothing. Dotted paths
(`{{ user.name }}`), indexes, filters (`upper`, `default`, `join`, `dump`...) and `{% if %}`
work. One deliberate difference: a name the case does not define is an error naming it, where
Nunjucks would render nothing and the assertion would quietly test something else.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from gateway.evals.jsvalues import js_json, js_string

MARKERS = ("{{", "{%", "{#")


class TemplateProblem(ValueError):
    """A value whose template cannot be rendered: a syntax error or an undefined name."""


def _nunjucks_output(value: Any) -> Any:
    """What `{{ value }}` writes: Nunjucks writes null and undefined as nothing."""
    if value is None or isinstance(value, Undefined):
        return "" if value is None else value
    return js_string(value)


def _dump(value: Any, indent: int | None = None) -> str:
    """Nunjucks' `dump` filter: JSON.stringify."""
    if indent:
        import json

        return json.dumps(value, indent=indent, ensure_ascii=False)
    return js_json(value)


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=StrictUndefined,
        keep_trailing_newline=True,  # Nunjucks keeps a value's last newline
        finalize=_nunjucks_output,
        autoescape=False,
    )
    env.filters["dump"] = _dump
    return env


def has_template(text: str) -> bool:
    return any(marker in text for marker in MARKERS)


def render(text: str, variables: dict[str, Any]) -> str:
    """The text with its template filled from the case's variables (unchanged without one)."""
    if not has_template(text):
        return text
    try:
        return _environment().from_string(text).render(variables)
    except TemplateError as exc:
        known = ", ".join(sorted(variables)) or "none"
        raise TemplateProblem(f"{text!r}: {exc.message} (variables: {known})") from None


def render_value(value: Any, variables: dict[str, Any]) -> Any:
    """A string, or each string of a list, rendered; other values as they are (as promptfoo)."""
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, list):
        return [render(item, variables) if isinstance(item, str) else item for item in value]
    return value
