"""The front matter schema of a .prompt file, and pydantic errors as 'line: message' pairs.

Strict on purpose (principle 5): YAML already gives native types, so `max_tokens: "100"` or a
misspelled key is an author's mistake to report, not a value to coerce or ignore.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.core.yamlfile import YamlDocument, format_loc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ModelConfig(_Strict):
    """Sampling parameters sent with every call of this prompt (OpenAI names)."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    # The bounds the gateway holds every call to (gateway/calls/chat_body.py): a prompt that
    # passes `prompts check` must not then have every call refused.
    max_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    top_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    response_format: ResponseFormat | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_message(cls, value: Any) -> Any:
        # The union would otherwise report one error per member, which reads as noise.
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            if len(value) > 4:
                raise ValueError(
                    f"takes at most 4 stop sequences (OpenAI's limit), not {len(value)}"
                )
            return value
        raise ValueError("must be a string or a list of strings")


class InputSpec(_Strict):
    schema_: dict[str, Any] | None = Field(
        default=None,
        alias="schema",
        description="Picoschema (as Dotprompt defines it) or a JSON Schema object.",
    )
    default: dict[str, Any] | None = Field(
        default=None, description="Values used for variables the caller leaves out."
    )


class OutputSpec(_Strict):
    format: Literal["text", "json"] | None = Field(
        default=None, description="Defaults to json when a schema is given, else text."
    )
    schema_: dict[str, Any] | None = Field(
        default=None, alias="schema", description="Picoschema or JSON Schema of a json answer."
    )


class FrontMatter(_Strict):
    """The YAML between the `---` lines of a .prompt file."""

    name: str | None = Field(default=None, description="Must match the file name if given.")
    variant: str | None = None
    description: str | None = None
    model: str | None = Field(default=None, min_length=1, description="A gateway model alias.")
    config: ModelConfig | None = None
    input: InputSpec | None = None
    output: OutputSpec | None = None
    tools: list[str] | None = None
    metadata: dict[str, Any] | None = Field(default=None, description="Free-form (owner, tags).")


def validate_front(
    doc: YamlDocument,
) -> tuple[FrontMatter | None, list[tuple[int, str]], set[str]]:
    """The front matter, its problems as (line, message), and the top-level keys with problems.

    With problems, the front matter returned holds only the valid top-level keys, so the
    checks that follow (schemas, template) still run and every problem is reported at once.
    """
    data = doc.data or {}
    try:
        return FrontMatter.model_validate(data), [], set()
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = []
        for err in errors:
            loc = tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                message = _unknown_key_message(loc)
            else:
                message = f"{format_loc(loc)}: {err['msg'].removeprefix('Value error, ')}"
            problems.append((doc.line_of(loc) or 1, message))
    broken = {str(err["loc"][0]) for err in errors if err["loc"]}
    try:
        kept = {k: v for k, v in data.items() if str(k) not in broken}
        valid = FrontMatter.model_validate(kept)
    except ValidationError:
        valid = None
    return valid, problems, broken


def _unknown_key_message(loc: tuple[str | int, ...]) -> str:
    key, parent = str(loc[-1]), loc[:-1]
    known = _known_keys(parent)
    where = f" in {format_loc(parent)}" if parent else ""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
    if close:
        return f"unknown key {key!r}{where}: did you mean {close[0]!r}?"
    return f"unknown key {key!r}{where} (allowed: {', '.join(known)})"


def _known_keys(loc: tuple[str | int, ...]) -> list[str]:
    model: type[BaseModel] = FrontMatter
    for part in loc:
        field = next(
            (f for n, f in model.model_fields.items() if (f.alias or n) == part),
            None,
        )
        nested = _model_in(field.annotation) if field is not None else None
        if nested is None:
            return []
        model = nested
    return sorted(f.alias or n for n, f in model.model_fields.items())


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside `X | None`, if any."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def front_json_schema() -> str:
    schema = FrontMatter.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Gateway prompt front matter (prompts/*.prompt)"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
