"""The example collection, `gateway-docs`: the project's own documentation (README.md and
docs/*.md), cut into sections and embedded by the bundled model through the gateway, so that
index health and a retrieval-augmented eval suite have something real to work on.

The documents are read from the project (found from the current folder up, as the CLI finds
it) or, from an installed package outside any project, from the source tree it was installed
from; `--source` names other Markdown files or folders.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.indexes.adopt import RECORDED_BY, metadata_entry
from gateway.indexes.engine import (
    Missing,
    Place,
    Stored,
    create_collection,
    drop_collection,
    open_collection,
)

EXAMPLE = "gateway-docs"
MAX_CHARS = (
    800  # ~200 tokens: all-MiniLM-L6-v2 reads 256 at most; longer sections are cut at paragraphs
)
HEADING = re.compile(r"^(#{1,4})\s+(.+?)\s*#*\s*$")
NAMESPACE = uuid.UUID("6f6c6c6d-6f70-7367-6174-657761792d64")  # ids stay put across builds


class ExampleError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str
    source: str  # file#heading-slug: what a golden query's `expected` can name
    title: str
    text: str


def documents(root: Path | None) -> list[Path]:
    """README.md and docs/*.md of the project at `root`, else of the source tree this package
    was installed from (an editable install or a clone)."""
    for folder in (root, Path(__file__).resolve().parents[2]):
        if folder is not None and (folder / "README.md").is_file():
            return [folder / "README.md", *sorted((folder / "docs").glob("*.md"))]
    raise ExampleError(
        "no README.md found in the project or beside the installed package: give the Markdown "
        "files to embed with --source"
    )


def markdown_files(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("*.md"))
        elif path.is_file():
            found.append(path)
        else:
            raise ExampleError(f"{path}: no such file or folder")
    if not found:
        raise ExampleError(f"no Markdown files in {', '.join(map(str, paths))}")
    return found


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "top"


def _pieces(text: str) -> list[str]:
    pieces, current = [], ""
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if current and len(current) + len(paragraph) > MAX_CHARS:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        pieces.append(current)
    return pieces


def chunks(files: Sequence[Path], base: Path | None = None) -> list[Chunk]:
    """Sections under their headings (code blocks kept whole), cut to MAX_CHARS pieces."""
    found: list[Chunk] = []
    for path in files:
        try:
            name = str(path.relative_to(base)) if base else path.name
        except ValueError:
            name = path.name
        sections: list[tuple[str, list[str]]] = [(path.stem, [])]
        fenced = False
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
            heading = None if fenced else HEADING.match(line)
            if heading:
                sections.append((heading[2].strip(), []))
            elif not line.startswith("<!--"):
                sections[-1][1].append(line)
        for title, lines in sections:
            for index, piece in enumerate(_pieces("\n".join(lines))):
                source = f"{name}#{_slug(title)}"
                key = f"{source}/{index}"
                found.append(
                    Chunk(str(uuid.uuid5(NAMESPACE, key)), source, title, f"{title}\n\n{piece}")
                )
    return found


def digest(found: Sequence[Chunk], model_id: str) -> str:
    material = "\n\0".join([model_id, *(f"{c.id}\t{c.text}" for c in found)])
    return hashlib.sha256(material.encode()).hexdigest()


def built_digest(place: Place, name: str) -> str | None:
    """The corpus digest the existing example collection was built from (None: none)."""
    try:
        collection = open_collection(place, name)
    except Missing:
        return None
    try:
        recorded = collection.facts().metadata or {}
    finally:
        collection.close()
    if recorded.get("recorded_by") != RECORDED_BY or "corpus" not in recorded:
        raise ExampleError(
            f"{place.where} holds a collection build-example did not make; it is left alone "
            f"(name another collection with --collection)"
        )
    corpus: str = recorded["corpus"]
    return corpus


def write(
    place: Place,
    name: str,
    found: Sequence[Chunk],
    vectors: Sequence[Sequence[float]],
    model_id: str,
    alias: str,
    corpus: str,
) -> None:
    """Replaces the example collection with these chunks (blocking)."""
    import numpy as np

    drop_collection(place, name)  # built_digest() made sure it is ours
    size = len(vectors[0])
    entry: dict[str, Any] = {**metadata_entry(model_id, alias, size), "corpus": corpus}
    collection = create_collection(
        place, name, size, entry, range_fields=["updated_at"], keyword_fields=["source"]
    )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        collection.upsert(
            [
                Stored(
                    chunk.id,
                    np.asarray(vector, dtype=np.float32),
                    {
                        "text": chunk.text,
                        "title": chunk.title,
                        "source": chunk.source,
                        "embedding_model": model_id,
                        "updated_at": now,
                    },
                )
                for chunk, vector in zip(found, vectors, strict=True)
            ]
        )
        collection.optimize()
    finally:
        collection.close()
