"""Rendering a validated prompt with the caller's variables into OpenAI chat messages.

The body is rendered by dotpromptz's Handlebars engine with Dotprompt's own helpers, and the
result is split into messages on Dotprompt's markers the way dotpromptz's `to_messages` does.
Not through the render function `Dotprompt.compile` returns: on every call that re-merges
and copies the prompt's metadata and builds a pydantic `RenderedPrompt` (~50 of its ~95 µs),
for front matter the gateway has already validated and applied.
tests/test_prompt_rendering.py holds both paths to the same messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dotpromptz import Role
from dotpromptz.helpers import register_all_helpers
from dotpromptz_handlebars import EscapeFunction, Handlebars
from jsonschema import validators
from jsonschema.exceptions import best_match

from gateway.core.errors import BadRequest
from gateway.core.yamlfile import format_loc
from gateway.prompts.files import PromptFile

_CHAT_ROLES = {Role.SYSTEM: "system", Role.USER: "user", Role.MODEL: "assistant"}
# Messages are split on these markers after rendering, so a variable containing one could
# forge a system message; a space defuses it and keeps the text readable.
_MARKER = "<<<dotprompt:"
_DEFUSED = "<<< dotprompt:"
# Dotprompt's markers, matched as dotpromptz's parser matches them.
_ROLE_OR_HISTORY = re.compile(r"(<<<dotprompt:(?:role:[a-z]+|history))>>>")
_MEDIA_OR_SECTION = re.compile(r"(<<<dotprompt:(?:media:url|section).*?)>>>")
_ROLE = "<<<dotprompt:role:"
_HISTORY = "<<<dotprompt:history"
_NOT_TEXT = ("<<<dotprompt:media:", "<<<dotprompt:section")


@dataclass(frozen=True, slots=True)
class _Compiled:
    render: Callable[..., str]  # Handlebars' compiled template: (context, options) -> text
    validator: Any  # a jsonschema Validator, or None when the prompt declares no input


class PromptRenderer:
    """Compiles each (name, version) once and renders variables to OpenAI messages."""

    def __init__(self) -> None:
        self._handlebars = Handlebars(escape_fn=EscapeFunction.NO_ESCAPE)  # as Dotprompt's
        register_all_helpers(self._handlebars)
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    async def render(self, prompt: PromptFile, variables: dict[str, Any]) -> list[dict[str, Any]]:
        compiled = self._compiled.get((prompt.name, prompt.version))
        if compiled is None:
            compiled = self._compile(prompt)
        defaults = (prompt.front.get("input") or {}).get("default") or {}
        values = {**defaults, **variables}
        if compiled.validator is not None:
            error = best_match(compiled.validator.iter_errors(values))
            if error is not None:
                at = f"{format_loc(list(error.absolute_path))}: " if error.absolute_path else ""
                raise BadRequest(
                    f"prompt {prompt.name}@{prompt.version}: variables do not match its input "
                    f"schema: {at}{error.message}",
                    param="prompt.variables",
                )
        try:
            return to_chat_messages(compiled.render(_defused(values), {"data": {}}))
        except ValueError as exc:  # the template and the values disagree in a way not caught above
            raise BadRequest(
                f"prompt {prompt.name}@{prompt.version}: cannot render: {exc}", param="prompt"
            ) from None

    def _compile(self, prompt: PromptFile) -> _Compiled:
        render = self._handlebars.compile(prompt.template)
        schema = prompt.input_schema
        validator = validators.validator_for(schema)(schema) if schema is not None else None
        return self._compiled.setdefault(
            (prompt.name, prompt.version), _Compiled(render, validator)
        )


def to_chat_messages(rendered: str) -> list[dict[str, Any]]:
    """A rendered body as OpenAI messages, split as dotpromptz's `to_messages` splits it: text
    before the first role marker is the user's, a role marker on a still-empty message only
    changes its role, `{{history}}` starts a model message (a caller's history follows the
    rendered messages in the request instead), and sections and media are not text."""
    sources: list[list[Any]] = [[Role.USER, ""]]
    for piece in _ROLE_OR_HISTORY.split(rendered):
        if not piece.strip():
            continue
        if piece.startswith(_ROLE):
            role = Role(piece[len(_ROLE) :])  # ValueError for a role Dotprompt does not know
            if sources[-1][1].strip():
                sources.append([role, ""])
            else:
                sources[-1][0] = role
        elif piece.startswith(_HISTORY):
            sources.append([Role.MODEL, ""])
        else:
            sources[-1][1] += piece
    messages = []
    for role, source in sources:
        text = "".join(
            part
            for part in _MEDIA_OR_SECTION.split(source)
            if part.strip() and not part.startswith(_NOT_TEXT)
        ).strip()
        if text:
            messages.append({"role": _CHAT_ROLES.get(role, "user"), "content": text})
    return messages


def _defused(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(_MARKER, _DEFUSED) if _MARKER in value else value
    if isinstance(value, dict):
        return {key: _defused(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_defused(item) for item in value]
    return value
