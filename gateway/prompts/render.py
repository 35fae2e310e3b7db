"""Rendering a validated prompt with the caller's variables into OpenAI chat messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dotpromptz import DataArgument, Dotprompt, PromptFunction, Role, TextPart
from jsonschema import validators
from jsonschema.exceptions import best_match

from gateway.errors import BadRequest
from gateway.prompts.files import PromptFile
from gateway.yamlfile import format_loc

_ROLES = {Role.SYSTEM: "system", Role.USER: "user", Role.MODEL: "assistant"}
# dotpromptz splits messages on these markers after rendering, so a variable containing one
# could forge a system message; a space defuses it and keeps the text readable.
_MARKER = "<<<dotprompt:"
_DEFUSED = "<<< dotprompt:"


@dataclass(frozen=True, slots=True)
class _Compiled:
    render: PromptFunction[Any]
    validator: Any  # a jsonschema Validator, or None when the prompt declares no input


class PromptRenderer:
    """Compiles each (name, version) once and renders variables to OpenAI messages."""

    def __init__(self) -> None:
        self._dotprompt = Dotprompt()
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    async def render(self, prompt: PromptFile, variables: dict[str, Any]) -> list[dict[str, Any]]:
        compiled = self._compiled.get((prompt.name, prompt.version))
        if compiled is None:
            compiled = await self._compile(prompt)
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
            rendered = await compiled.render(DataArgument(input=_defused(values)))
        except ValueError as exc:  # the template and the values disagree in a way not caught above
            raise BadRequest(
                f"prompt {prompt.name}@{prompt.version}: cannot render: {exc}", param="prompt"
            ) from None
        messages = []
        for message in rendered.messages:
            text = "".join(p.text for p in message.content if isinstance(p, TextPart)).strip()
            if text:
                messages.append({"role": _ROLES.get(message.role, "user"), "content": text})
        return messages

    async def _compile(self, prompt: PromptFile) -> _Compiled:
        # The front matter is already validated and applied here; handing dotpromptz only the
        # body (behind an empty front matter, so a leading '#' line stays text) spares every
        # render its metadata merge and Picoschema pass, about 0.3 ms.
        render: PromptFunction[Any] = await self._dotprompt.compile("---\n---\n" + prompt.template)
        schema = prompt.input_schema
        validator = validators.validator_for(schema)(schema) if schema is not None else None
        # Concurrent first renders may both compile; either result is the same, keep one.
        return self._compiled.setdefault(
            (prompt.name, prompt.version), _Compiled(render, validator)
        )


def _defused(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(_MARKER, _DEFUSED) if _MARKER in value else value
    if isinstance(value, dict):
        return {key: _defused(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_defused(item) for item in value]
    return value
