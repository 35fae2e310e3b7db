"""JSON Schemas in assertions: read as promptfoo reads them, and checked with every `format`.

promptfoo validates with Ajv and ajv-formats, so `format: email` or `format: date-time` is a
real check there. jsonschema checks most formats only with optional packages, and its `email`
is "contains @"; the checkers here follow the ajv-formats ("full" mode) definitions with the
standard library. A format no checker here knows is refused when the suite loads (Ajv refuses
an unknown format too), so no `format` is ever silently unchecked.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
import uuid
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

from gateway.core.schemacheck import schema_problem
from gateway.evals.js_regex import JsRegexError, compile_js

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME = re.compile(r"(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:([zZ])|([+-])(\d{2}):?(\d{2}))", re.ASCII)
_DURATION = re.compile(
    r"P(?!$)((\d+Y)?(\d+M)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?|(\d+W)?)", re.ASCII
)
_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?",
    re.IGNORECASE | re.ASCII,
)
_HOSTNAME = re.compile(
    r"(?=.{1,253}\.?$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[-0-9a-z]{0,61}[0-9a-z])?)*\.?",
    re.IGNORECASE | re.ASCII,
)
# RFC 3986: characters a URI may hold, and a percent sign only as an escape.
_URI_CHARS = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]]|%[0-9A-Fa-f]{2})*"
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*"
_URI = re.compile(rf"{_SCHEME}:{_URI_CHARS}")
_URI_REFERENCE = re.compile(_URI_CHARS)
_URL = re.compile(
    r"(?:https?|ftp)://(?:[^\s:@/]+(?::[^\s:@/]*)?@)?(?:[A-Za-z0-9\-._~%]+|\[[0-9A-Fa-f:.]+\])"
    r"(?::\d{1,5})?(?:[/?#]\S*)?",
    re.ASCII,
)
_UUID = re.compile(r"(?:urn:uuid:)?[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}", re.IGNORECASE)
_JSON_POINTER = re.compile(r"(?:/(?:[^~/]|~0|~1)*)*")
_RELATIVE_JSON_POINTER = re.compile(r"(?:0|[1-9][0-9]*)(?:#|(?:/(?:[^~/]|~0|~1)*)*)")
_URI_TEMPLATE = re.compile(
    r"(?:[^\x00-\x20\"'<>%\\^`{|}]|%[0-9A-Fa-f]{2}|\{[+#./;?&=,!@|]?"
    r"(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})+(?::[1-9][0-9]{0,3}|\*)?"
    r"(?:,(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})+(?::[1-9][0-9]{0,3}|\*)?)*\})*"
)
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _valid_date(text: str) -> bool:
    match = _DATE.fullmatch(text)
    if match is None:
        return False
    try:
        dt.date(*map(int, match.groups()))
    except ValueError:
        return False
    return True


def _valid_time(text: str) -> bool:
    match = _TIME.fullmatch(text)
    if match is None:
        return False
    hour, minute, second = (int(part) for part in match.groups()[:3])
    offset_hour, offset_minute = match.group(6), match.group(7)
    if offset_hour is not None and (int(offset_hour) > 23 or int(offset_minute) > 59):
        return False
    # 60 is a leap second, as RFC 3339 allows.
    return hour <= 23 and minute <= 59 and second <= 60


def _date_time(text: str) -> bool:
    parts = re.split(r"[Tt ]", text, maxsplit=1)
    return len(parts) == 2 and _valid_date(parts[0]) and _valid_time(parts[1])


def _ip(version: int) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            return ipaddress.ip_address(text).version == version
        except ValueError:
            return False

    return check


def _hostname(text: str) -> bool:
    return _HOSTNAME.fullmatch(text) is not None


def _idn_hostname(text: str) -> bool:
    import idna  # a dependency of httpx, always installed

    try:
        idna.encode(text)
    except idna.IDNAError:
        return False
    return True


def _idn_email(text: str) -> bool:
    local, at, domain = text.rpartition("@")
    return bool(at and local and not any(c.isspace() for c in local)) and _idn_hostname(domain)


def _iri(text: str) -> bool:
    ascii_form = "".join(c if c.isascii() else "a" for c in text)
    return _URI.fullmatch(ascii_form) is not None


def _iri_reference(text: str) -> bool:
    return _URI_REFERENCE.fullmatch("".join(c if c.isascii() else "a" for c in text)) is not None


def _uuid(text: str) -> bool:
    if _UUID.fullmatch(text) is None:
        return False
    uuid.UUID(text.removeprefix("urn:uuid:"))
    return True


def _regex(text: str) -> bool:
    try:
        compile_js(text)  # a pattern, as ECMA-262 (JavaScript) reads it
    except JsRegexError:
        return False
    return True


def _byte(text: str) -> bool:
    if _BASE64.fullmatch(text) is None:
        return False
    try:
        base64.b64decode(text, validate=True)
    except binascii.Error:
        return False
    return True


def _integer_within(bits: int) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, int) and -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)

    return check


def _matches(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda text: pattern.fullmatch(text) is not None


def _always(text: str) -> bool:
    return True


_STRING_FORMATS: dict[str, Callable[[str], bool]] = {
    "date": _valid_date,
    "time": _valid_time,
    "date-time": _date_time,
    "duration": _matches(_DURATION),
    "email": _matches(_EMAIL),
    "idn-email": _idn_email,
    "hostname": _hostname,
    "idn-hostname": _idn_hostname,
    "ipv4": _ip(4),
    "ipv6": _ip(6),
    "uri": _matches(_URI),
    "uri-reference": _matches(_URI_REFERENCE),
    "iri": _iri,
    "iri-reference": _iri_reference,
    "url": _matches(_URL),
    "uri-template": _matches(_URI_TEMPLATE),
    "uuid": _uuid,
    "json-pointer": _matches(_JSON_POINTER),
    "relative-json-pointer": _matches(_RELATIVE_JSON_POINTER),
    "regex": _regex,
    "byte": _byte,
    "password": _always,  # ajv-formats: documentation only
    "binary": _always,
}
_NUMBER_FORMATS: dict[str, Callable[[Any], bool]] = {
    "int32": _integer_within(32),
    "int64": _integer_within(64),
    "float": lambda value: True,
    "double": lambda value: True,
}
KNOWN_FORMATS = sorted([*_STRING_FORMATS, *_NUMBER_FORMATS])


@lru_cache(maxsize=1)
def format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    for name, check in _STRING_FORMATS.items():
        checker.checks(name)(_on_strings(check))
    for name, number_check in _NUMBER_FORMATS.items():
        checker.checks(name)(_on_numbers(number_check))
    return checker


def _on_strings(check: Callable[[str], bool]) -> Callable[[Any], bool]:
    # A format says nothing about values of other types (JSON Schema's rule).
    return lambda value: not isinstance(value, str) or check(value)


def _on_numbers(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: (
        isinstance(value, bool) or not isinstance(value, int | float) or check(value)
    )


def _formats_in(schema: Any) -> Iterator[str]:
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if isinstance(item.get("format"), str):
                yield item["format"]
            stack.extend(v for k, v in item.items() if k not in ("const", "enum", "default"))


def schema_value_problem(value: Any) -> tuple[Any, str | None]:
    """The schema an assertion's value gives (a mapping, or YAML/JSON text as promptfoo
    accepts), and what is wrong with it, if anything."""
    schema = value
    if isinstance(value, str):
        try:
            schema = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            return value, f"is text that is not a YAML or JSON schema: {exc}".split("\n")[0]
    problem = schema_problem(schema)
    if problem is not None:
        return schema, problem
    unknown = sorted(set(_formats_in(schema)) - set(KNOWN_FORMATS))
    if unknown:
        return schema, (
            f"uses format {unknown[0]!r}, which the gateway cannot check (it checks: "
            f"{', '.join(KNOWN_FORMATS)})"
        )
    return schema, None


def validation_problem(document: Any, schema: Any) -> str | None:
    """Where the document breaks the schema (formats included), else None."""
    cls = validator_for(schema, default=Draft202012Validator)
    validator = cls(schema, format_checker=format_checker())
    error = best_match(validator.iter_errors(document))
    return None if error is None else f"at {error.json_path}: {error.message}"
