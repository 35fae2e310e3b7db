"""Rendering a validated prompt into the OpenAI messages a call sends.

The body is rendered by dotpromptz's Handlebars engine with Dotprompt's helpers and the
version's own partials, with the variables (over `input.default`) as the context and the `@`
data (the caller's `prompt.context`, and `@auth` from the gateway) as Handlebars data, as
dotpromptz's render function does. The text becomes messages in `messages.py`.
Not through the render function `Dotprompt.compile` returns: on every call that re-merges
and copies the prompt's metadata and builds pydantic models (~50 of its ~95 µs), for front
matter the gateway has already validated and applied.
tests/test_dotprompt_conformance.py holds both paths to the same messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dotpromptz.helpers import register_all_helpers
from dotpromptz_handlebars import EscapeFunction, Handlebars
from jsonschema import validators
from jsonschema.exceptions import best_match

from gateway.core.errors import BadRequest
from gateway.core.yamlfile import format_loc
from gateway.prompts.messages import chat_messages, legacy_chat_messages
from gateway.prompts.prompt import PromptFile
from gateway.prompts.schemas import CONTEXT_KEY, GATEWAY_DATA, is_object
from gateway.prompts.template import HANDLEBARS_DATA

# Messages are split on these markers after rendering, so a value containing one could
# forge a system message; a space defuses it and keeps the text readable.
_MARKER = "<<<dotprompt:"
_DEFUSED = "<<< dotprompt:"


@dataclass(frozen=True, slots=True)
class _Compiled:
    render: Callable[..., str]  # Handlebars' compiled template: (context, options) -> text
    validator: Any  # a jsonschema Validator, or None when the prompt declares no input
    context_validator: Any  # for the caller's `@` data, or None when it declares none


class PromptRenderer:
    """Compiles each (name, version) once and renders calls to OpenAI messages."""

    def __init__(self) -> None:
        self._handlebars = _engine({})  # for versions without partials: shared
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    async def render(
        self,
        prompt: PromptFile,
        variables: Any,
        context: Mapping[str, Any] | None = None,
        history: Sequence[dict[str, Any]] | None = None,
        auth: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The messages to send: the rendered body with the caller's messages (`history`)
        placed as Dotprompt places them. `context` is the caller's `@` data; `auth` what
        the gateway fills as `@auth`."""
        compiled = self._compiled.get((prompt.name, prompt.version))
        if compiled is None:
            compiled = self._compile(prompt)
        values = _values(prompt, variables)
        if compiled.validator is not None:
            _check(compiled.validator, values, prompt, "variables", "its input schema")
        data = _data(prompt, compiled, context, auth)
        try:
            rendered = compiled.render(_defused(values), {"data": data})
            if prompt.legacy:
                return [*legacy_chat_messages(rendered), *(history or ())]
            return chat_messages(rendered, history)
        except ValueError as exc:  # the template and the values disagree in a way not caught
            raise BadRequest(
                f"prompt {prompt.name}@{prompt.version}: cannot render: {exc}", param="prompt"
            ) from None

    def _compile(self, prompt: PromptFile) -> _Compiled:
        engine = _engine(prompt.partials) if prompt.partials else self._handlebars
        render = engine.compile(prompt.template)
        schema = prompt.input_schema
        validator = validators.validator_for(schema)(schema) if schema is not None else None
        context = prompt.context_schema
        context_validator = validators.validator_for(context)(context) if context else None
        compiled = _Compiled(render, validator, context_validator)
        return self._compiled.setdefault((prompt.name, prompt.version), compiled)


def _engine(partials: Mapping[str, str]) -> Handlebars:
    handlebars = Handlebars(escape_fn=EscapeFunction.NO_ESCAPE)  # as Dotprompt's
    register_all_helpers(handlebars)
    for name, source in partials.items():
        handlebars.register_partial(name, source)
    return handlebars


def _values(prompt: PromptFile, variables: Any) -> Any:
    """The template's context: the variables over input.default, or, for an input schema of
    one value (`schema: string`), that value."""
    if prompt.input_schema is not None and not is_object(prompt.input_schema):
        return variables
    if not isinstance(variables, dict):
        raise BadRequest(
            f"prompt {prompt.name}@{prompt.version}: variables must be an object of named "
            f"values, not {type(variables).__name__}",
            param="prompt.variables",
        )
    defaults = (prompt.front.get("input") or {}).get("default") or {}
    return {**defaults, **variables} if defaults else variables


def _data(
    prompt: PromptFile,
    compiled: _Compiled,
    context: Mapping[str, Any] | None,
    auth: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Handlebars data for `{{@name}}`: the caller's context, checked against the prompt's
    `gateway.context`, and `@auth`. Built only for a template that reads `@` data."""
    if context:
        reserved = sorted(set(context) & (GATEWAY_DATA | HANDLEBARS_DATA))
        if reserved:
            raise BadRequest(
                f"prompt.context may not set {', '.join(reserved)}: the gateway or Handlebars "
                f"fills it",
                param="prompt.context",
            )
        if compiled.context_validator is None:
            raise BadRequest(
                f"prompt {prompt.name}@{prompt.version} reads no caller context (it declares "
                f"no {CONTEXT_KEY}); send no prompt.context",
                param="prompt.context",
            )
    if compiled.context_validator is not None:  # as variables: a required name is required
        _check(compiled.context_validator, context or {}, prompt, "context", CONTEXT_KEY)
    if prompt.legacy or not prompt.data_names:
        return {}
    data = _defused(dict(context)) if context else {}
    if "auth" in prompt.data_names and auth is not None:
        data["auth"] = _defused(dict(auth))
    return data


def _check(validator: Any, value: Any, prompt: PromptFile, what: str, schema: str) -> None:
    error = best_match(validator.iter_errors(value))
    if error is not None:
        at = f"{format_loc(list(error.absolute_path))}: " if error.absolute_path else ""
        raise BadRequest(
            f"prompt {prompt.name}@{prompt.version}: {what} do not match {schema}: "
            f"{at}{error.message}",
            param=f"prompt.{what}",
        )


def _defused(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(_MARKER, _DEFUSED) if _MARKER in value else value
    if isinstance(value, dict):
        return {key: _defused(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_defused(item) for item in value]
    return value
