"""Calling a prompt by name: from `extra_body={"prompt": ...}` or a `prompt/NAME@LABEL` model.

The prompt's model and config apply unless the request sets them; request messages come
after the rendered ones; variables are validated against the prompt's input schema.
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
USER_HEADER = "x-gateway-user"


@dataclass(frozen=True, slots=True)
class PromptRef:
    name: str
    label: str | None = None
    version: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    user: str | None = None


def _variables_header(headers: Mapping[str, str]) -> dict[str, Any]:
    raw = headers.get(VARIABLES_HEADER)
    if not raw:
        return {}
    try:
        variables = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(f"{VARIABLES_HEADER} must be a JSON object.") from None
    if not isinstance(variables, dict):
        raise BadRequest(f"{VARIABLES_HEADER} must be a JSON object.")
    return variables


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
        return PromptRef(name, ref or None, None, _variables_header(headers), user)
    if not isinstance(spec, dict):
        raise BadRequest("'prompt' must be an object with 'name'.", param="prompt")
    unknown = set(spec) - {"name", "label", "version", "variables"}
    if unknown:
        raise BadRequest(
            f"'prompt' has unknown field(s) {sorted(unknown)}; use name, label or version, "
            f"and variables.",
            param="prompt",
        )
    given_name, label, version = spec.get("name"), spec.get("label"), spec.get("version")
    variables = spec.get("variables") or {}
    if not isinstance(given_name, str) or not given_name:
        raise BadRequest("'prompt.name' is required.", param="prompt.name")
    if label is not None and version is not None:
        raise BadRequest("Give 'prompt.label' or 'prompt.version', not both.", param="prompt")
    if not all(v is None or isinstance(v, str) for v in (label, version)):
        raise BadRequest("'prompt.label' and 'prompt.version' are strings.", param="prompt")
    if not isinstance(variables, dict):
        raise BadRequest("'prompt.variables' must be an object.", param="prompt.variables")
    return PromptRef(given_name, label, version, variables, user)


def apply_prompt(
    body: dict[str, Any], prompt: PromptFile, messages: list[dict[str, Any]]
) -> dict[str, Any]:
    """The request to send: the prompt's model and config under the request's overrides."""
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
    extra = body.get("messages") or []
    if not isinstance(extra, list):
        raise BadRequest("'messages' must be an array.", param="messages")
    out["messages"] = [*messages, *extra]
    if prompt.output_format == "json" and "response_format" not in out:
        if prompt.output_schema:
            schema = {"name": prompt.name.replace(".", "_"), "schema": prompt.output_schema}
            out["response_format"] = {"type": "json_schema", "json_schema": schema}
        else:
            out["response_format"] = {"type": "json_object"}
    return out
