"""What prompts share from beside them: partials and named schemas.

Partials are found as Dotprompt's directory store finds them: `_card.prompt` is the partial
`card`, `support/_card.prompt` is `support/card`, and a partial file is template source as it
is (no front matter). Named schemas are the gateway's own files, since Dotprompt leaves their
registration to the runtime: `Ticket.schema.yaml` (or `.json`) anywhere in the prompts folder
is the schema `Ticket`, written as JSON Schema or Picoschema (which may name other schemas),
and Picoschema in any prompt may name it (`ticket: Ticket`).

A prompt's version includes the partials and schemas it uses (`Includes`), so editing a
partial mints a new version of every prompt that includes it, and a stored version renders
from its own copies on every replica.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotpromptz import picoschema_to_json_schema
from dotpromptz_handlebars import Handlebars

from gateway.core.errors import ConfigError
from gateway.core.schemacheck import schema_problem
from gateway.core.yamlfile import MIB, YamlDocument, YamlError, one_line, read_text, text_problem
from gateway.prompts.template import scan_body

PARTIAL_PREFIX = "_"
SUFFIX = ".prompt"
SCHEMA_SUFFIXES = (".schema.yaml", ".schema.yml", ".schema.json")
_PARTIAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_SCHEMA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_SCALARS = frozenset({"any", "boolean", "integer", "null", "number", "string", "object", "array"})
MAX_INCLUDED_BYTES = 1 * MIB
_ADVICE = "a partial or a schema is a page at most"

Includes = dict[str, dict[str, Any]]  # {"partials": {name: source}, "schemas": {name: schema}}


def normalize(text: str) -> str:
    """Only what cannot change what a model receives: line endings, and a byte-order mark
    (an encoding marker, not text)."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def is_partial(path: Path) -> bool:
    return path.name.startswith(PARTIAL_PREFIX)


@dataclass
class Library:
    """Partials (name -> source) and named schemas (name -> JSON Schema), with where each
    came from for messages, and the files that failed (their problems, path:line: message)."""

    partials: dict[str, str] = field(default_factory=dict)
    schemas: dict[str, Any] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # "partial card" -> "prompts/_card..."
    problems: dict[Path, list[str]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # "partial card" / "schema Ticket"

    @classmethod
    def stored(cls, includes: Mapping[str, Any] | None) -> Library:
        """The copies a stored version was registered with."""
        includes = includes or {}
        return cls(dict(includes.get("partials") or {}), dict(includes.get("schemas") or {}))

    def near(self, kind: str, name: str) -> list[str]:
        names = self.partials if kind == "partial" else self.schemas
        return difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.7)

    def resolver(self, used: set[str]) -> Callable[[str], Coroutine[Any, Any, Any]]:
        """A Picoschema resolver that notes the names it resolved (async: dotpromptz runs a
        plain function in a thread, and schemas are expanded synchronously)."""

        async def resolve(name: str) -> Any:
            schema = self.schemas.get(name)
            if schema is not None:
                used.add(name)
            return copy.deepcopy(schema)

        return resolve


def load_library(directory: Path) -> Library:
    """Every partial and named schema under directory (hidden folders skipped)."""
    library = Library()
    if not directory.is_dir():
        return library
    for path in _files(directory):
        relative = path.relative_to(directory)
        if path.name.endswith(SUFFIX):
            _load_partial(library, path, relative)
    schema_docs: dict[str, tuple[Path, YamlDocument]] = {}
    for path in _files(directory):
        if path.name.endswith(SCHEMA_SUFFIXES):
            _read_schema(library, path, schema_docs)
    for name in sorted(schema_docs):
        _expand_schema(library, name, schema_docs, [])
    for name, source in sorted(library.partials.items()):
        _check_partial_uses(library, name, source)
    return library


def _files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        parts = path.relative_to(directory).parts
        wanted = (path.name.endswith(SUFFIX) and is_partial(path)) or path.name.endswith(
            SCHEMA_SUFFIXES
        )
        if wanted and path.is_file() and not any(part.startswith(".") for part in parts):
            yield path


def _problem(library: Library, path: Path, line: int, message: str) -> None:
    library.problems.setdefault(path, []).append(one_line(f"{path}:{line}: {message}"))


def _read(library: Library, path: Path) -> str | None:
    try:
        text = read_text(path, MAX_INCLUDED_BYTES, _ADVICE)
    except ConfigError as exc:
        rest = str(exc).removeprefix(f"{path}:")
        library.problems.setdefault(path, []).append(
            f"{path}:{rest}" if rest[:1].isdigit() else f"{path}:1:{rest}"
        )
        return None
    problem = text_problem(text)
    if problem is not None:
        bad = next(i for i, char in enumerate(text) if text_problem(char))
        _problem(library, path, text.count("\n", 0, bad) + 1, f"the file {problem}")
        return None
    return normalize(text)


def _load_partial(library: Library, path: Path, relative: Path) -> None:
    stem = path.name[len(PARTIAL_PREFIX) : -len(SUFFIX)]
    if not _PARTIAL_NAME.fullmatch(stem):
        variant = " (partials have no variants)" if "." in stem else ""
        _problem(
            library,
            path,
            1,
            f"partial file name {path.name!r} is not _<name>.prompt with letters, digits, "
            f"'-' and '_'{variant}",
        )
        return
    folder = relative.parent.as_posix()
    name = stem if folder == "." else f"{folder}/{stem}"
    key = f"partial {name}"
    source = _read(library, path)
    if source is None:
        library.broken.add(key)
        library.partials[name] = ""
        return
    library.partials[name] = source
    library.where[key] = str(path)
    found = scan_body(source, 1)
    for line, message in found.problems:
        _problem(library, path, line, message)
    if not found.problems:
        try:
            Handlebars().compile(source)
        except Exception as exc:  # the real parser is the last word on syntax
            _problem(library, path, 1, f"template syntax error: {exc}")
    if path in library.problems:
        library.broken.add(key)


def _check_partial_uses(library: Library, name: str, source: str) -> None:
    key = f"partial {name}"
    if key in library.broken:
        return
    path = Path(library.where[key])
    found = scan_body(source, 1)
    for use in found.partials:
        if use.name not in library.partials and use.name not in found.inline and not use.block:
            _problem(library, path, use.line, missing_partial(library, use.name))
            library.broken.add(key)


def missing_partial(library: Library, name: str) -> str:
    close = library.near("partial", name)
    hint = f": did you mean {{{{> {close[0]}}}}}?" if close else ""
    return (
        f"{{{{> {name}}}}}: no partial named {name!r} (a file "
        f"{_partial_file(name)} in the prompts folder){hint}"
    )


def _partial_file(name: str) -> str:
    folder, _, stem = name.rpartition("/")
    return f"{folder}/_{stem}{SUFFIX}" if folder else f"_{stem}{SUFFIX}"


def _read_schema(library: Library, path: Path, docs: dict[str, tuple[Path, YamlDocument]]) -> None:
    name = next(path.name[: -len(s)] for s in SCHEMA_SUFFIXES if path.name.endswith(s))
    if not _SCHEMA_NAME.fullmatch(name) or name in _SCALARS:
        _problem(
            library,
            path,
            1,
            f"schema file name {path.name!r} is not <Name>.schema.yaml with a name of letters, "
            f"digits and '_' that is not a Picoschema type",
        )
        return
    if name in docs:
        _problem(library, path, 1, f"schema {name!r} is also defined by {docs[name][0]}")
        library.broken.add(f"schema {name}")
        return
    text = _read(library, path)
    if text is None:
        library.broken.add(f"schema {name}")
        return
    try:
        doc = YamlDocument(path, text)
    except YamlError as exc:
        _problem(library, path, exc.line or 1, exc.problem)
        library.broken.add(f"schema {name}")
        return
    docs[name] = (path, doc)
    library.where[f"schema {name}"] = str(path)


def _expand_schema(
    library: Library, name: str, docs: dict[str, tuple[Path, YamlDocument]], chain: list[str]
) -> None:
    """Picoschema in a schema file becomes JSON Schema, naming other schemas (expanded
    first, so a cycle is found and reported rather than followed)."""
    key = f"schema {name}"
    if name in library.schemas or key in library.broken or name not in docs:
        return
    path, doc = docs[name]
    if name in chain:
        cycle = [*chain[chain.index(name) :], name]
        for member in cycle[:-1]:
            _problem(
                library,
                docs[member][0],
                1,
                f"schemas name each other in a cycle: {' -> '.join(cycle)}",
            )
            library.broken.add(f"schema {member}")
        return
    for other in sorted(_named_types(doc.data) & set(docs)):
        _expand_schema(library, other, docs, [*chain, name])
        if f"schema {other}" in library.broken and key not in library.broken:
            _problem(library, path, 1, f"names schema {other!r}, which has problems")
            library.broken.add(key)
    if key in library.broken:
        return
    expanded, problem = expand(doc.data, library, set())
    if problem is None and expanded is not None:
        problem = schema_problem(expanded)
    if problem is not None or expanded is None:
        _problem(library, path, 1, f"schema {name} {problem or 'is empty'}")
        library.broken.add(key)
        return
    library.schemas[name] = expanded


def _named_types(value: Any, top: bool = True) -> set[str]:
    """Words in a Picoschema that may name a schema (a type before its description); none
    in a JSON Schema, which dotpromptz takes as it is."""
    if top and isinstance(value, dict) and _is_json_schema(value):
        return set()
    found: set[str] = set()
    if isinstance(value, str):
        found.add(value.split(",", 1)[0].strip())
    elif isinstance(value, dict):  # lists are enum values, never types
        for item in value.values():
            found |= _named_types(item, top=False)
    return found


def _is_json_schema(value: dict[str, Any]) -> bool:
    """What dotpromptz reads as JSON Schema rather than Picoschema."""
    kind = value.get("type")
    return (isinstance(kind, str) and kind in _SCALARS) or isinstance(value.get("properties"), dict)


def expand(schema: Any, library: Library, used: set[str]) -> tuple[Any, str | None]:
    """Picoschema (or JSON Schema) to JSON Schema by dotpromptz, naming the library's
    schemas; (schema, None), or (None, why not)."""
    try:
        # deepcopy: dotpromptz appends None to an optional enum's list in place.
        coroutine = picoschema_to_json_schema(copy.deepcopy(schema), library.resolver(used))
        return _finish(coroutine), None
    except Exception as exc:  # dotpromptz raises ValueError, and worse on odd shapes
        message = str(exc)
        unknown = re.search(r"(?:for|name|type) '([^']*)'", message)
        if unknown is not None and ("returned None" in message or "find schema" in message):
            word = unknown.group(1)
            if f"schema {word}" in library.broken:
                return None, f"names schema {word!r}, whose file has problems"
            known = [*sorted(_SCALARS - {"object", "array"}), *sorted(library.schemas)]
            close = difflib.get_close_matches(word, known, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = (
                f"names a type {word!r} that is neither a Picoschema type nor a schema file "
                f"({word}.schema.yaml in the prompts folder){hint}"
            )
            return None, message
        return None, f"is not valid Picoschema: {message}"


def _finish(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (Picoschema with the library's async resolver,
    which never awaits): schemas are expanded synchronously, in or outside an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("Picoschema expansion suspended")
