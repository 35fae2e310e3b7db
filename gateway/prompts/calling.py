"""Calling a prompt by name: from `extra_body={"prompt": ...}` or a `prompt/NAME@LABEL` model.

The prompt's model and config apply unless the request sets them; the request's messages are
the conversation so far, placed among the rendered ones as Dotprompt places history (at
`{{history}}`, else before the prompt's last user message); variables are validated against
the prompt's input schema and `context` (the `@` data) against its `gateway.context`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.core.errors import BadRequest
from gateway.prompts.files import PromptFile

MODEL_PREFIX = "prompt/"
VARIABLES_HEADER = "x-gateway-prompt-variables"
CONTEXT_HEADER = "x-gateway-prompt-context"
USER_HEADER = "x-gateway-user"
_FIELDS = ("name", "variant", "label", "version", "variables", "context")


@dataclass(frozen=True, slots=True)
class PromptRef:
    name: str
    label: str | None = None
    version: str | None = None
    # An object of named values; for a prompt whose input schema is one value, that value.
    variables: Any = field(default_factory=dict)
    user: str | None = None
    context: dict[str, Any] = field(default_factory=dict)  # the template's `@` data


def _json_header(headers: Mapping[str, str], name: str, scalar: bool = False) -> Any:
    raw = headers.get(name)
    if not raw:
        return {}
    kind = "JSON" if scalar else "a JSON object"
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(f"{name} must be {kind}.") from None
    if not scalar and not isinstance(value, dict):
        raise BadRequest(f"{name} must be {kind}.")
    return value


def prompt_ref(body: dict[str, Any], headers: Mapping[str, str]) -> PromptRef | None:
    """The prompt a request asks for, if any (and the body without the `prompt` field)."""
    spec = body.pop("prompt", None)
    user = body.get("user") if isinstance(body.get("user"), str) else headers.get(USER_HEADER)
    model = body.get("model")
    if spec is None:
        if not (isinstance(model, str) and model.startswith(MODEL_PREFIX)):
            return None
        name, _, ref = model[len(MODEL_PREFIX) :].partition("@")
        if not name:
            raise BadRequest("model 'prompt/NAME[@LABEL]' needs a prompt name.", param="model")
        variables = _json_header(headers, VARIABLES_HEADER, scalar=True)
        context = _json_header(headers, CONTEXT_HEADER)
        return PromptRef(name, ref or None, None, variables, user, context)
    if not isinstance(spec, dict):
        raise BadRequest("'prompt' must be an object with 'name'.", param="prompt")
    unknown = set(spec) - set(_FIELDS)
    if unknown:
        raise BadRequest(
            f"'prompt' has unknown field(s) {sorted(unknown)}; use name (and variant), label "
            f"or version, variables and context.",
            param="prompt",
        )
    given_name, label, version = spec.get("name"), spec.get("label"), spec.get("version")
    variant = spec.get("variant")
    variables = spec.get("variables")
    context = spec.get("context")
    context = {} if context is None else context
    if not isinstance(given_name, str) or not given_name:
        raise BadRequest("'prompt.name' is required.", param="prompt.name")
    if label is not None and version is not None:
        raise BadRequest("Give 'prompt.label' or 'prompt.version', not both.", param="prompt")
    if not all(v is None or isinstance(v, str) for v in (label, version, variant)):
        raise BadRequest(
            "'prompt.label', 'prompt.version' and 'prompt.variant' are strings.", param="prompt"
        )
    if not isinstance(context, dict):
        raise BadRequest("'prompt.context' must be an object.", param="prompt.context")
    if variant:  # Dotprompt's variant: the file <name>.<variant>.prompt
        given_name = f"{given_name}.{variant}"
    return PromptRef(
        given_name, label, version, {} if variables is None else variables, user, context
    )


def history_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's own messages: the conversation the prompt's messages take in."""
    extra = body.get("messages") or []
    if not isinstance(extra, list):
        raise BadRequest("'messages' must be an array.", param="messages")
    return extra


def apply_prompt(
    body: dict[str, Any], prompt: PromptFile, messages: list[dict[str, Any]]
) -> dict[str, Any]:
    """The request to send: the prompt's model and config under the request's overrides,
    and `messages`, the rendered prompt with the request's own messages placed in it."""
    out = dict(body)
    model = body.get("model")
    if (
        not isinstance(model, str)
        or not model
        or model == "prompt"
        or model.startswith(MODEL_PREFIX)
    ):
        if not prompt.model:
            raise BadRequest(
                f"Prompt {prompt.name}@{prompt.version} names no model; send one in 'model'.",
                param="model",
            )
        out["model"] = prompt.model
    for key, value in prompt.config.items():
        out.setdefault(key, value)
    out["messages"] = messages
    if prompt.output_format == "json" and "response_format" not in out:
        if prompt.output_schema:
            schema = {"name": prompt.name.replace(".", "_"), "schema": prompt.output_schema}
            out["response_format"] = {"type": "json_schema", "json_schema": schema}
        else:
            out["response_format"] = {"type": "json_object"}
    return out
