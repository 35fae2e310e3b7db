"""Checks of the request fields the gateway itself reads, enforces or prices, by OpenAI's
documented rules, before anything is reserved or sent upstream.

Plain checks of the fields present, not a pydantic parse: a typical chat body (four messages
and six other fields) costs 2 to 4 microseconds on the two-core test machine, about what
parsing its JSON costs. Fields the gateway does not read are left to the provider untouched
(providers take fields OpenAI does not). A null is an absent field, as OpenAI reads it.
Every refusal is a 400 whose `param` is the field's path and whose message says what was
sent and what is expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from gateway.core.errors import BadRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Roles whose message may carry no content: an assistant's turn that only calls tools (or
# refuses), and the legacy function result, whose content OpenAI types as nullable.
CONTENT_OPTIONAL = frozenset({"assistant", "function"})
MAX_CHOICES = 128  # OpenAI's bound on n
# Beyond any model's output (the largest today are in the hundreds of thousands), and budgets
# reserve n x max_tokens: a 10**12 would reserve a fortune and be refused upstream anyway.
MAX_OUTPUT_TOKENS = 10_000_000
MAX_STOP_SEQUENCES = 4
MAX_TOP_LOGPROBS = 20
INT64 = 2**63
INT32_MAX = 2**31 - 1  # what upstream servers parse a count into
FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
ENCODING_FORMATS = ("float", "base64")

Check = Callable[[str, Any], None]


def shown(value: Any) -> str:
    """The value as the caller wrote it in JSON, short: never the whole of a large one (a
    repr of a 100,000-item array would cost as much as the body)."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if value is None:
        return "null"
    if type(value) is bool:
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, list):
        return f"an array of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _refuse(param: str, expected: str, value: Any) -> BadRequest:
    return BadRequest(f"'{param}' must be {expected}, not {shown(value)}.", param=param)


def _integer(low: int, high: int) -> Check:
    expected = f"an integer from {low:,} to {high:,}"

    def check(name: str, value: Any) -> None:
        # type() and not isinstance(): true and false are ints in Python, not in JSON.
        if type(value) is not int or not low <= value <= high:
            raise _refuse(name, expected, value)

    return check


def _number(low: int, high: int) -> Check:
    expected = f"a number from {low} to {high}"

    def check(name: str, value: Any) -> None:
        if type(value) not in (int, float) or not low <= value <= high:
            raise _refuse(name, expected, value)

    return check


def _boolean(name: str, value: Any) -> None:
    if type(value) is not bool:
        raise _refuse(name, "true or false", value)


def _string(name: str, value: Any) -> None:
    if type(value) is not str:
        raise _refuse(name, "a string", value)


def _one_of(*choices: str) -> Check:
    expected = "one of " + ", ".join(repr(c) for c in choices)

    def check(name: str, value: Any) -> None:
        if type(value) is not str or value not in choices:
            raise _refuse(name, expected, value)

    return check


def _object(name: str, value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise _refuse(name, "an object", value)
    return value


def _stop(name: str, value: Any) -> None:
    if type(value) is str:
        return
    expected = f"a string or an array of at most {MAX_STOP_SEQUENCES} strings"
    if type(value) is not list or len(value) > MAX_STOP_SEQUENCES:
        raise _refuse(name, expected, value)
    for index, sequence in enumerate(value):
        _string(f"{name}[{index}]", sequence)


def _stream_options(name: str, value: Any) -> None:
    options = _object(name, value)
    include_usage = options.get("include_usage")
    if include_usage is not None:
        _boolean(f"{name}.include_usage", include_usage)


def _tools(name: str, value: Any) -> None:
    if type(value) is not list:
        raise _refuse(name, "an array of tools", value)
    for index, tool in enumerate(value):
        fault = _tool_fault(tool)
        if fault is not None:
            path, expected, sent = fault
            raise _refuse(f"{name}[{index}]{path}", expected, sent)


def _tool_fault(tool: Any) -> tuple[str, str, Any] | None:
    """A tool's first bad field: its path within the tool, what is expected, what was sent.
    (Returned, not raised with a formatted path: agents send dozens of tools on every call.)"""
    if type(tool) is not dict:
        return "", "a tool object with a 'type'", tool
    kind = tool.get("type")
    if kind == "function":
        function = tool.get("function")
        if type(function) is not dict:
            return ".function", "an object with a 'name'", function
        called = function.get("name")
        if type(called) is not str or FUNCTION_NAME.fullmatch(called) is None:
            return ".function.name", "1 to 64 letters, digits, '_' or '-'", called
        description = function.get("description")
        if description is not None and type(description) is not str:
            return ".function.description", "a string", description
        parameters = function.get("parameters")
        if parameters is not None and type(parameters) is not dict:
            return ".function.parameters", "an object (a JSON Schema)", parameters
    elif kind == "custom":  # OpenAI's free-form tools (a grammar or plain text)
        custom = tool.get("custom")
        if type(custom) is not dict:
            return ".custom", "an object with a 'name'", custom
        if type(custom.get("name")) is not str:
            return ".custom.name", "a string", custom.get("name")
    else:
        return ".type", "'function' or 'custom'", kind
    return None


def _tool_choice(name: str, value: Any) -> None:
    if type(value) is str:
        if value not in TOOL_CHOICES:
            raise _refuse(name, "'none', 'auto', 'required' or an object", value)
        return
    kind = _object(name, value).get("type")
    if kind == "function" or kind == "custom":
        named = _object(f"{name}.{kind}", value.get(kind))
        _string(f"{name}.{kind}.name", named.get("name"))
    elif kind == "allowed_tools":
        _object(f"{name}.allowed_tools", value.get("allowed_tools"))
    else:
        raise _refuse(f"{name}.type", "'function', 'custom' or 'allowed_tools'", kind)


def _response_format(name: str, value: Any) -> None:
    _one_of(*RESPONSE_FORMATS)(f"{name}.type", _object(name, value).get("type"))


def _messages(name: str, value: Any) -> None:
    if type(value) is not list or not value:
        raise _refuse(name, "a non-empty array of messages", value)
    # Paths are formatted only for a refusal: this loop runs for every message of every call.
    for index, message in enumerate(value):
        if type(message) is not dict:
            expected = "a message object with 'role' and 'content'"
            raise _refuse(f"{name}[{index}]", expected, message)
        role = message.get("role")
        # The type first: a list or an object cannot be looked up in a set.
        if type(role) is not str or role not in ROLES:
            expected = "one of " + ", ".join(sorted(ROLES))
            raise _refuse(f"{name}[{index}].role", expected, role)
        content = message.get("content")
        if type(content) is str:
            continue
        if type(content) is list:
            _parts(f"{name}[{index}].content", content)
        elif content is not None or role not in CONTENT_OPTIONAL:
            expected = "a string or an array of content parts"
            raise _refuse(f"{name}[{index}].content", expected, content)


def _parts(name: str, parts: list[Any]) -> None:
    for index, part in enumerate(parts):
        if type(part) is not dict:
            raise _refuse(f"{name}[{index}]", "a content part object with a 'type'", part)
        kind = part.get("type")
        if type(kind) is not str:
            expected = "a string such as 'text' or 'image_url'"
            raise _refuse(f"{name}[{index}].type", expected, kind)
        # Text is what the meter counts when the upstream reports no usage.
        if kind == "text" and type(part.get("text")) is not str:
            raise _refuse(f"{name}[{index}].text", "a string", part.get("text"))


def _model(name: str, value: Any) -> None:
    if type(value) is not str or not value:
        raise _refuse(name, "a model alias (a non-empty string)", value)


output_tokens = _integer(1, MAX_OUTPUT_TOKENS)
penalty = _number(-2, 2)

# Only fields the gateway reads, enforces or prices, or whose bad values would be refused
# upstream after a reservation; the rest of the body is not looked at.
CHAT_FIELDS: dict[str, Check] = {
    "model": _model,
    "messages": _messages,
    "stream": _boolean,
    "stream_options": _stream_options,
    "max_tokens": output_tokens,
    "max_completion_tokens": output_tokens,
    "n": _integer(1, MAX_CHOICES),
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "presence_penalty": penalty,
    "frequency_penalty": penalty,
    "seed": _integer(-INT64, INT64 - 1),
    "stop": _stop,
    "user": _string,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "logprobs": _boolean,
    "top_logprobs": _integer(0, MAX_TOP_LOGPROBS),
    "response_format": _response_format,
}


def _require(body: dict[str, Any], name: str, expected: str) -> None:
    if body.get(name) is None:
        raise BadRequest(f"'{name}' is required: {expected}.", param=name)


def check_chat(body: dict[str, Any]) -> None:
    """Refuses a chat completion body whose fields the gateway relies on are missing or bad."""
    _require(body, "model", "a model alias")
    _require(body, "messages", "a non-empty array of messages")
    for name, value in body.items():
        check = CHAT_FIELDS.get(name)
        if check is not None and value is not None:
            check(name, value)


def _embedding_input(name: str, value: Any) -> None:
    if type(value) is str:
        if not value:
            raise _refuse(name, "a non-empty string", value)
        return
    if type(value) is not list or not value:
        expected = "a non-empty string or array of strings, or an array of token ids"
        raise _refuse(name, expected, value)
    # Inputs run to thousands of strings or tokens: the common cases are checked at C speed,
    # and only a refusal walks the items in Python to name the one at fault.
    first = type(value[0])
    if first is str:
        fine = set(map(type, value)) == {str} and "" not in value
    else:
        fine = first in (int, list) and _token_ids_only(value, nested=first is list)
    if not fine:
        _locate(name, value)


def _token_ids_only(value: list[Any], *, nested: bool) -> bool:
    """Whether value is an array of integers of 0 or more (nested: of non-empty such arrays),
    read off its JSON, which orjson writes in C at a few ns per token: integers are bare
    digits, so with digits and commas deleted only the brackets of the expected shape may be
    left (a sign, a point, an exponent, true, null, a quote, a brace or another level of
    brackets would stay). A loop over the items, or a set of their types, costs several times
    as much."""
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:  # beyond 64 bits, from a caller other than HTTP
        return False
    shape = text.translate(None, b"0123456789,")
    if nested:
        return shape == b"[" + b"[]" * len(value) + b"]" and b"[]" not in text
    return shape == b"[]"


def _locate(name: str, items: list[Any]) -> None:
    """Names the first item that is not of the kind of the first one, or not a good one."""
    kinds = {str: "a non-empty string", int: "a token id", list: "an array of token ids"}
    first = type(items[0])
    for index, item in enumerate(items):
        at = f"{name}[{index}]"
        if type(item) not in kinds:
            raise _refuse(at, "a string, a token id or an array of token ids", item)
        if type(item) is not first:
            raise _refuse(at, f"{kinds[first]} like {name}[0]", item)
        if item == "":
            raise _refuse(at, "a non-empty string", item)
        if type(item) is int and item < 0:
            raise _refuse(at, "a token id (an integer of 0 or more)", item)
        if type(item) is list:
            _tokens(at, item)


def _tokens(name: str, tokens: list[Any]) -> None:
    if not tokens:
        raise _refuse(name, "a non-empty array of token ids", tokens)
    for index, token in enumerate(tokens):
        if type(token) is not int or token < 0:
            raise _refuse(f"{name}[{index}]", "a token id (an integer of 0 or more)", token)


EMBEDDINGS_FIELDS: dict[str, Check] = {
    "model": _model,
    "input": _embedding_input,
    "dimensions": _integer(1, INT32_MAX),
    "encoding_format": _one_of(*ENCODING_FORMATS),
    "user": _string,
}


def check_embeddings(body: dict[str, Any]) -> None:
    """Refuses an embeddings body whose fields the gateway relies on are missing or bad."""
    _require(body, "model", "a model alias")
    _require(body, "input", "a string or array of strings, or token arrays")
    for name, value in body.items():
        check = EMBEDDINGS_FIELDS.get(name)
        if check is not None and value is not None:
            check(name, value)
