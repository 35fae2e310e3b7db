"""A validated prompt version, and how its version id is made.

A version identifies exactly what reaches the model: the file's text with only its line
endings normalized, and the partials and named schemas it includes. Versions registered
before the gateway rendered as Dotprompt does are `legacy`: they keep their ids (the hash of
the text with trailing spaces and blank lines trimmed) and keep rendering as they did then,
so a label pointing at one serves exactly what it served.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.prompts.library import Includes, normalize

# Hashed before the text: the same file is a new version under Dotprompt's rendering than
# the legacy version of that text, since what reaches the model differs.
_VERSION_MARK = b"dotprompt-render/1\n"


class PromptError(Exception):
    """Validation problems of one file; .problems is a list of 'path:line: message' strings."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.path = path
        self.problems = problems


@dataclass(frozen=True, slots=True)
class PromptFile:
    name: str
    path: Path
    text: str  # line endings normalized: what the version hashes and the database stores
    version: str
    front: dict[str, Any]
    template: str  # the body as Dotprompt reads it (legacy: as the gateway read it)
    model: str | None
    config: dict[str, Any]
    input_schema: dict[str, Any] | None  # JSON Schema; keys with an input.default not required
    output_format: str
    output_schema: dict[str, Any] | None
    model_line: int | None = None  # where `model:` is written, for messages about the model
    context_schema: dict[str, Any] | None = None  # what callers pass as `@` data
    data_names: frozenset[str] = frozenset()  # `@` names the template reads (auth, state...)
    partials: dict[str, str] = field(default_factory=dict)  # included, by name
    schemas: dict[str, Any] = field(default_factory=dict)  # named schemas used, as expanded
    ext: dict[str, Any] = field(default_factory=dict)  # Dotprompt's namespaced metadata
    legacy: bool = False

    @property
    def includes(self) -> Includes | None:
        """What the version includes beside its text; None for a legacy version."""
        if self.legacy:
            return None
        return includes_of(self.partials, self.schemas)


def includes_of(partials: dict[str, str], schemas: dict[str, Any]) -> Includes:
    found: Includes = {}
    if partials:
        found["partials"] = dict(partials)
    if schemas:
        found["schemas"] = dict(schemas)
    return found


def version_of(text: str, includes: Includes | None = None) -> str:
    digest = hashlib.sha256(_VERSION_MARK)
    digest.update(normalize(text).encode("utf-8"))
    if includes:
        digest.update(b"\0" + orjson.dumps(includes, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()[:12]


def legacy_normalize(text: str) -> str:
    """How versions were normalized before: trailing spaces and blank lines trimmed."""
    text = normalize(text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n") + "\n"


def legacy_version_of(text: str) -> str:
    return hashlib.sha256(legacy_normalize(text).encode("utf-8")).hexdigest()[:12]
