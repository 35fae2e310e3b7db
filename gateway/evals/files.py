"""`file://` references in suites, as promptfoo users write them: relative to the suite file,
and never outside the project (a suite from a pull request must not read the machine's files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.core.errors import ConfigError
from gateway.core.project import find_root
from gateway.core.yamlfile import MIB, YamlDocument, read_text

PREFIX = "file://"
MAX_FILE_BYTES = 16 * MIB
STRUCTURED = {".json", ".yaml", ".yml"}
GLOB_CHARACTERS = set("*?[")


class FileRefError(ValueError):
    """A `file://` reference that cannot be used: its message says why."""


def is_file_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


@dataclass(frozen=True, slots=True)
class Files:
    """Resolves `file://` references of one suite: relative to `base`, inside `root`."""

    base: Path  # the suite's folder
    root: Path  # the project (the folder holding config/gateway.yaml or .gateway/)

    @classmethod
    def for_suite(cls, suite_path: Path) -> Files:
        base = suite_path.resolve().parent
        return cls(base, (find_root(base) or base).resolve())

    def path(self, ref: str) -> Path:
        """The file a reference names (`file://` and any `:function` already removed)."""
        relative = ref.removeprefix(PREFIX)
        if not relative:
            raise FileRefError("file:// names no file")
        found = (self.base / relative).resolve()
        if not found.is_relative_to(self.root):
            raise FileRefError(
                f"{PREFIX}{relative} is outside the project ({self.root}); suites read only "
                "files inside it"
            )
        return found

    def paths(self, ref: str) -> list[Path]:
        """The files of a reference; a glob (`file://data/*.txt`) names each match, in order."""
        relative = ref.removeprefix(PREFIX)
        if not GLOB_CHARACTERS & set(relative):
            return [self.path(ref)]
        if Path(relative).is_absolute():
            raise FileRefError(f"{ref}: a glob must be relative to the suite")
        found = sorted(self.base.glob(relative))
        if not found:
            raise FileRefError(f"{ref}: no file matches")
        return [self.path(str(match.relative_to(self.base))) for match in found]

    def text(self, path: Path) -> str:
        try:
            return read_text(path, MAX_FILE_BYTES, "point at a smaller file")
        except ConfigError as exc:
            raise FileRefError(str(exc)) from None

    def data(self, path: Path) -> Any:
        """A .json, .yaml or .yml file as data, read as strictly as suites are."""
        text = self.text(path)
        if path.suffix == ".json":
            try:
                return json.loads(text, parse_constant=_not_json)
            except ValueError as exc:
                raise FileRefError(f"{path}: not JSON: {exc}") from None
        try:
            return YamlDocument(path, text).data
        except ConfigError as exc:
            raise FileRefError(str(exc)) from None

    def variable(self, ref: str) -> Any:
        """A variable's `file://` value: data for .json/.yaml, the text of anything else (every
        file's for a glob, which then expands into one case per file)."""
        paths = self.paths(ref)
        for path in paths:
            if path.suffix in (".py", ".js", ".ts", ".mjs", ".cjs"):
                raise FileRefError(f"{ref}: variables computed by code are not supported")
        values = [self.data(p) if p.suffix in STRUCTURED else self.text(p) for p in paths]
        return values if len(paths) > 1 or GLOB_CHARACTERS & set(ref) else values[0]

    def expected(self, ref: str) -> Any:
        """An assertion value's `file://`: data for .json/.yaml, trimmed text for .txt (as
        promptfoo reads them)."""
        path = self.path(ref)
        if path.suffix in STRUCTURED:
            return self.data(path)
        if path.suffix == ".txt":
            return self.text(path).strip()
        raise FileRefError(
            f"{ref}: an assertion value can be a .json, .yaml, .yml or .txt file, or a Python "
            "function (file://checks.py:function)"
        )


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
