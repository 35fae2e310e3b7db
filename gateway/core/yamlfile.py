"""Reading user-authored files: bounded in size, YAML with line numbers, errors naming the line.

Config, suites and prompt front matter are written by people and sometimes by attackers (a
pull request): any text must end as data or as a `ConfigError`, never as a traceback, a hang
or a blown heap. Size, nesting and alias expansion are bounded before any value is built.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from gateway.core.errors import ConfigError
from gateway.core.typos import unknown_key

MIB = 1024 * 1024
# Far above any real config, suite or prompt; far below what would take minutes to parse.
MAX_YAML_BYTES = 4 * MIB
# Values in a document with every alias expanded: a few aliases can otherwise stand for
# billions of values ("billion laughs") that validation would walk one by one.
MAX_YAML_VALUES = 1_000_000
# Mappings and lists inside each other; deeper input overflows recursive consumers
# (composer, JSON Schema checks, serializers) long before anyone writes it on purpose.
MAX_DEPTH = 64

# What str.splitlines() splits on: none of it may reach a one-line message unescaped.
_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# "unknown key 'api_bse': did you mean 'api_base'?" errors point at the key itself.
_TYPO = re.compile(r"unknown key '([^']+)': did you mean")

# Errors from texts up to this size are explained in PyYAML's own words, which name the bad
# character (libyaml's "found character that cannot start any token" does not say it is a tab).
_EXPLAIN_LIMIT = 256 * 1024


class YamlError(ConfigError):
    """A document that cannot become data; `line` is 1-based when known."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        problem = one_line(problem)
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}")
        self.line = line
        self.problem = problem


class _Refused(ComposerError):
    """Valid YAML the gateway will not build: too deep, cyclic, or too many values."""


class _RefusedValue(ConstructorError):
    """A value the gateway will not take: not JSON-like, or not of its explicit tag's type."""


class _BoundedComposer(Composer):
    """PyYAML's composer, refusing deep nesting, self-referencing aliases and documents whose
    aliases expand to too many values, while the node tree is built (before any data)."""

    # Provided by the parser this is mixed with (PyYAML's or libyaml's).
    check_event: Callable[..., bool]
    peek_event: Callable[[], Any]

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise _Refused(
                    None,
                    None,
                    f"alias *{event.anchor} refers to a value that contains it (a cycle)",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        nests = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        self._depth += nests
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    None,
                    None,
                    f"values nested more than {MAX_DEPTH} levels deep (flatten the document)",
                    self.peek_event().start_mark,
                )
            node = super().compose_node(parent, index)
        finally:
            self._depth -= nests
        if node is None:
            return None
        size = 1
        if isinstance(node, SequenceNode):
            size += sum(self._sizes[id(item)] for item in node.value)
        elif isinstance(node, MappingNode):
            size += sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        if size > MAX_YAML_VALUES:
            raise _Refused(
                None,
                None,
                f"the document stands for more than {MAX_YAML_VALUES:,} values once its aliases "
                f"are expanded (an alias bomb?); write fewer aliases or split the file",
                node.start_mark,
            )
        self._sizes[id(node)] = size
        return node


_STR = "tag:yaml.org,2002:str"
_KEY_TAGS = {_STR, "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"}
# YAML types with no JSON counterpart: they would reach request bodies and API answers,
# where serializing them fails on every call.
_NOT_JSON = ("binary", "timestamp", "set", "omap", "pairs")
_KINDS = {
    "seq": "a list",
    "map": "a mapping",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
}


def _kind(node: Node) -> str:
    kind = str(node.tag).rsplit(":", 1)[-1]
    return _KINDS.get(kind, kind)


class _JsonResolver(Resolver):
    """YAML 1.1 as PyYAML reads it, except that 2024-05-01 stays a string (as in JSON)."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML reads this class attribute
        first: [(tag, regexp) for tag, regexp in resolvers if not tag.endswith(":timestamp")]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }


def _refuse_not_json(constructor: SafeConstructor, node: Node) -> Any:
    kind = str(node.tag).rsplit(":", 1)[-1]
    raise _RefusedValue(
        None,
        None,
        f"!!{kind} values are not supported: use strings, numbers, true/false, null, lists "
        f"and mappings (as in JSON)",
        node.start_mark,
    )


def _text(constructor: SafeConstructor, node: Node) -> str:
    value = constructor.construct_scalar(node)  # type: ignore[arg-type]
    problem = text_problem(value)
    if problem is not None:
        raise _RefusedValue(None, None, f"a string {problem}", node.start_mark)
    return value


class _SafeConstructor(SafeConstructor):
    yaml_constructors: ClassVar[dict[Any, Any]] = {
        **SafeConstructor.yaml_constructors,
        **{f"tag:yaml.org,2002:{kind}": _refuse_not_json for kind in _NOT_JSON},
        _STR: _text,
    }

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        # PyYAML turns a scalar that does not fit its (explicit) tag into whatever the standard
        # library raised: ValueError for an int of 5,000 digits, KeyError for `!!bool maybe`.
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            value = repr(node.value[:40]) if isinstance(node.value, str) else "this value"
            problem = f"{value} is not {_kind(node)}"
            if isinstance(exc, ValueError):
                problem = f"{value} cannot be read as {_kind(node)}: {str(exc).split(';')[0]}"
            raise _RefusedValue(None, None, problem, node.start_mark) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        for key_node, _ in node.value:
            if key_node.tag not in _KEY_TAGS:
                shown = f" {key_node.value[:40]!r}" if isinstance(key_node.value, str) else ""
                raise _RefusedValue(
                    None,
                    None,
                    f"mapping keys must be strings, not {_kind(key_node)}{shown} (quote it)",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep)


class _PyLoader(Reader, Scanner, Parser, _BoundedComposer, _SafeConstructor, _JsonResolver):
    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _BoundedComposer.__init__(self)
        _SafeConstructor.__init__(self)
        _JsonResolver.__init__(self)


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _FastLoader(_BoundedComposer, CParser, _SafeConstructor, _JsonResolver):
        """libyaml's scanner and parser (~20x faster) under PyYAML's composer, bounded."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _SafeConstructor.__init__(self)
            _JsonResolver.__init__(self)
            _BoundedComposer.__init__(self)


def _load(loader: Any) -> tuple[Node | None, Any]:
    try:
        root = loader.get_single_node()
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


def parse_yaml(text: str) -> tuple[Node | None, Any]:
    """The node tree and the data of one YAML document; raises yaml.YAMLError."""
    if not yaml.__with_libyaml__:  # pragma: no cover - PyYAML built without libyaml
        return _load(_PyLoader(text))
    try:
        return _load(_FastLoader(text))
    except (_Refused, _RefusedValue):
        raise
    except yaml.YAMLError:
        if len(text) > _EXPLAIN_LIMIT:
            raise
    # PyYAML stops at the same place, and says what is wrong there more plainly.
    return _load(_PyLoader(text))


def read_text(path: Path, limit: int, advice: str) -> str:
    """A user-authored UTF-8 file, refused (ConfigError) when larger than limit bytes."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file")
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    if len(raw) > limit:
        raise ConfigError(f"{path}: larger than {limit // MIB} MiB, the most read ({advice})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8"
        ) from None


def check_size(path: Path, text: str, limit: int, advice: str) -> None:
    """The size bound for text that did not come from a file (stored copies)."""
    if len(text) > limit:
        raise ConfigError(f"{path}: larger than {limit // MIB} MiB, the most read ({advice})")


class YamlDocument:
    """Parsed data plus the node tree, to map a key path back to a line number."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        if len(text) > MAX_YAML_BYTES:
            raise YamlError(path, None, f"larger than {MAX_YAML_BYTES // MIB} MiB, the most read")
        try:
            self.root, self.data = parse_yaml(text)
        except (_Refused, _RefusedValue) as exc:
            raise YamlError(path, _line(exc), str(exc.problem)) from None
        except yaml.YAMLError as exc:
            raise YamlError(path, _line(exc, text), f"invalid YAML: {_problem(exc)}") from None
        except UnicodeEncodeError:  # lone surrogates: only from text that was never a file
            raise YamlError(path, None, "the text is not valid Unicode") from None

    @classmethod
    def read(cls, path: Path) -> YamlDocument:
        return cls(path, read_text(path, MAX_YAML_BYTES, "split the file"))

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """1-based line of the deepest node on the path that exists."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            child = None
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == part:
                        child = value_node
                        line = key_node.start_mark.line + 1
                        break
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                child = node.value[part]
                line = child.start_mark.line + 1
            if child is None:
                break
            node = child
        return line

    def where(self, loc: Sequence[str | int]) -> str:
        line = self.line_of(loc)
        return f"{self.path}:{line}" if line else str(self.path)


def _line(exc: yaml.YAMLError, text: str = "") -> int | None:
    if isinstance(exc, yaml.reader.ReaderError):
        return text.count("\n", 0, exc.position) + 1
    mark = getattr(exc, "problem_mark", None)
    return mark.line + 1 if mark is not None else None


def _problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character {chr(exc.character)!r} is not allowed in YAML (remove it)"
    return str(getattr(exc, "problem", None) or exc)


def text_problem(text: str) -> str | None:
    """What makes text unusable downstream: PostgreSQL refuses NUL in text and JSON columns,
    and a lone surrogate (from a \\ud800 escape) cannot be encoded as UTF-8 at all."""
    if "\x00" in text:
        return "contains a NUL character (\\0); remove it"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (\\ud800-\\udfff), which is not text; remove it"
    return None


def data_problem(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """For parsed JSON: nesting deeper than limit, or a string or key text_problem refuses."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return f"a string {problem}"
            continue
        if isinstance(item, dict):
            children: list[Any] = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return f"values nested more than {limit} levels deep"
        stack.extend((child, depth + 1) for child in children)
    return None


def one_line(message: str) -> str:
    """A problem is one line: line breaks inside user-written names are shown escaped."""
    return _BREAKS.sub(lambda m: repr(m.group())[1:-1], message)


def format_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
            continue
        # Keys are user-written: quote the ones that would not read as a plain name.
        name = part if isinstance(part, str) and part.isprintable() and part.strip() else repr(part)
        out += f".{name}" if out else name
    return out or "(top level)"


def validation_problems(
    doc: YamlDocument, exc: ValidationError, model: type[BaseModel] | None = None
) -> str:
    """pydantic's errors as `file:line: key.path: message` lines; given the model the document
    was validated against, an unknown key names the key it was probably meant to be."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(
                one_line(f"{doc.where(loc)}: {format_loc(loc)}: {unknown_key(model, loc)}")
            )
            continue
        typo = _TYPO.match(message)
        if typo:
            loc = (*loc, typo.group(1))
        lines.append(one_line(f"{doc.where(loc)}: {format_loc(loc)}: {message}"))
    return "\n".join(lines)
