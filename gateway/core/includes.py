"""LiteLLM's `include`: a config naming other files, merged into it as LiteLLM merges them.

Each entry is a path relative to the file that names it; included files may include others,
and a file already read is not read twice. Merging follows LiteLLM: a list (`model_list`) is
extended with the included file's, any other section is replaced by the included file's.
Errors keep naming the file and line a value was written on, in whichever file that is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.core.errors import ConfigError
from gateway.core.yamlfile import YamlDocument, format_loc, one_line

INCLUDE = "include"
# Far more than anyone splits a config into; bounds the work a hostile file can ask for.
MAX_FILES = 64


class MergedDocument(YamlDocument):
    """A config with its includes merged in; `where` finds the file and line of a value."""

    def __init__(self, main: YamlDocument) -> None:  # main is parsed: nothing to read here
        self.path = main.path
        self.root = main.root
        self._main = main
        self.data: dict[str, Any] = {k: v for k, v in main.data.items() if k != INCLUDE}
        self._owner: dict[str, YamlDocument] = dict.fromkeys(self.data, main)
        # For each list section, where each item came from: (document, its index there).
        self._items: dict[str, list[tuple[YamlDocument, int]]] = {
            key: [(main, i) for i in range(len(value))]
            for key, value in self.data.items()
            if isinstance(value, list)
        }

    def merge(self, doc: YamlDocument) -> None:
        for key, value in doc.data.items():
            if key == INCLUDE:
                continue
            current = self.data.get(key)
            if isinstance(value, list) and isinstance(current, list):
                self.data[key] = [*current, *value]
                self._items[key].extend((doc, i) for i in range(len(value)))
                continue
            self.data[key] = value
            self._owner[key] = doc
            if isinstance(value, list):
                self._items[key] = [(doc, i) for i in range(len(value))]
            else:
                self._items.pop(key, None)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        doc, inner = self._source(loc)
        return doc.line_of(inner)

    def where(self, loc: Sequence[str | int]) -> str:
        doc, inner = self._source(loc)
        return doc.where(inner)

    def _source(self, loc: Sequence[str | int]) -> tuple[YamlDocument, Sequence[str | int]]:
        if not loc or not isinstance(loc[0], str):
            return self._main, loc
        key = loc[0]
        items = self._items.get(key)
        if items and len(loc) > 1 and isinstance(loc[1], int) and 0 <= loc[1] < len(items):
            doc, index = items[loc[1]]
            return doc, (key, index, *loc[2:])
        return self._owner.get(key, self._main), loc


def _entries(doc: YamlDocument) -> list[str]:
    entries = doc.data.get(INCLUDE) if isinstance(doc.data, dict) else None
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
        raise ConfigError(
            f"{doc.where((INCLUDE,))}: {INCLUDE}: must be a list of file paths "
            f"(relative to {doc.path.name}'s folder)"
        )
    return entries


def read_config(path: Path) -> YamlDocument:
    """The config at path, with the files its `include` names merged in."""
    main = YamlDocument.read(path)
    if not isinstance(main.data, dict) or INCLUDE not in main.data:
        return main
    pending = [(entry, main, i) for i, entry in enumerate(_entries(main))]
    merged = MergedDocument(main)
    seen = {path.resolve()}
    while pending:
        entry, declared_in, index = pending.pop(0)
        target = (declared_in.path.parent / entry).resolve()
        if target in seen:
            continue
        seen.add(target)
        if len(seen) > MAX_FILES:
            raise ConfigError(f"{path}: includes more than {MAX_FILES} files")
        loc = (INCLUDE, index)
        try:
            included = YamlDocument.read(target)
        except ConfigError as exc:
            raise ConfigError(
                one_line(f"{declared_in.where(loc)}: {format_loc(loc)}: {entry}: {exc}")
            ) from None
        if not isinstance(included.data, dict):
            raise ConfigError(
                f"{declared_in.where(loc)}: {format_loc(loc)}: {target} is not a mapping of "
                f"sections"
            )
        pending.extend((e, included, i) for i, e in enumerate(_entries(included)))
        merged.merge(included)
    return merged
