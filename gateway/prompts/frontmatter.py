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

GATEWAY_NAMESPACE = "gateway"


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
    schema_: dict[str, Any] | str | None = Field(
        default=None,
        alias="schema",
        description="Picoschema (as Dotprompt defines it: an object, or one value such as "
        "'string, the text') or a JSON Schema object.",
    )
    default: dict[str, Any] | None = Field(
        default=None, description="Values used for variables the caller leaves out."
    )


class OutputSpec(_Strict):
    format: Literal["text", "json"] | None = Field(
        default=None, description="Defaults to json when a schema is given, else text."
    )
    schema_: dict[str, Any] | str | None = Field(
        default=None, alias="schema", description="Picoschema or JSON Schema of a json answer."
    )


class FrontMatter(_Strict):
    """The YAML between the `---` lines of a .prompt file.

    Keys with a dot (`myteam.owner: ada`) are Dotprompt's namespaced metadata: they are
    kept as `ext` (`{"myteam": {"owner": "ada"}}`) and not validated, except the gateway's
    own namespace, `gateway.`.
    """

    name: str | None = Field(default=None, description="Must match the file name if given.")
    variant: str | None = None
    description: str | None = None
    model: str | None = Field(default=None, min_length=1, description="A gateway model alias.")
    config: ModelConfig | None = None
    input: InputSpec | None = None
    output: OutputSpec | None = None
    tools: list[str] | None = None
    metadata: dict[str, Any] | None = Field(default=None, description="Free-form (owner, tags).")
    ext: dict[str, Any] | None = Field(
        default=None, description="Dotprompt's extension metadata, kept as written."
    )
    gateway_context: Any = Field(
        default=None,
        alias="gateway.context",
        description="Picoschema or JSON Schema of the `@` data callers pass with a call "
        "(`prompt.context`); the template may read those names and `@auth`.",
    )


def validate_front(
    doc: YamlDocument,
) -> tuple[FrontMatter | None, list[tuple[int, str]], set[str]]:
    """The front matter, its problems as (line, message), and the top-level keys with problems.

    With problems, the front matter returned holds only the valid top-level keys, so the
    checks that follow (schemas, template) still run and every problem is reported at once.
    """
    data, problems = _without_namespaced(doc)
    try:
        return FrontMatter.model_validate(data), problems, set()
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
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
        return FrontMatter.model_validate(kept), problems, broken
    except ValidationError:
        return None, problems, broken


def _without_namespaced(doc: YamlDocument) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    """The front matter without the namespaced keys Dotprompt keeps as ext, and problems of
    the ones that look like a mistake (in the gateway's namespace, or a dotted path into a
    key Dotprompt defines, which Dotprompt would not read as that key)."""
    data = dict(doc.data or {})
    problems = []
    known = _known_keys(())
    for key in [k for k in data if isinstance(k, str) and "." in k and k not in known]:
        namespace = key.rpartition(".")[0]
        line = doc.line_of((key,)) or 1
        if namespace == GATEWAY_NAMESPACE:
            ours = [k for k in known if k.startswith(f"{GATEWAY_NAMESPACE}.")]
            close = difflib.get_close_matches(key, ours, n=1, cutoff=0.7)
            hint = f": did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(ours)})"
            problems.append((line, f"unknown key {key!r}{hint}"))
        elif namespace.split(".")[0] in known:
            first = namespace.split(".")[0]
            problems.append(
                (
                    line,
                    f"{key!r} would be kept as ext metadata, not read as {first} (write it "
                    f"nested under {first}:)",
                )
            )
        del data[key]
    return data, problems


def _unknown_key_message(loc: tuple[str | int, ...]) -> str:
    key, parent = str(loc[-1]), loc[:-1]
    known = _known_keys(parent)
    where = f" in {format_loc(parent)}" if parent else ""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
    if close:
        return f"unknown key {key!r}{where}: did you mean {close[0]!r}?"
    own = "" if parent else "; keep your own under metadata or a namespaced key like team.owner"
    return f"unknown key {key!r}{where} (allowed: {', '.join(known)}{own})"


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
    # Namespaced keys (a dot inside) are Dotprompt's ext metadata, free-form.
    schema["patternProperties"] = {r"^[^.]+\..+$": {}}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Gateway prompt front matter (prompts/*.prompt)"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
