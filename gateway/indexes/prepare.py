"""What a check needs from outside the collection, gathered before it is opened: the model's
dimension (one probe text embedded through the gateway), the golden queries embedded the
same way, the live source ids, and recent query embeddings for query drift."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.core.config import GatewayConfig
from gateway.core.index_config import IndexCollection
from gateway.core.validation import first_problem
from gateway.core.yamlfile import MIB, format_loc, one_line
from gateway.indexes.drift import QueryEmbeddings
from gateway.indexes.scene import Golden, Prepared

# (model alias, texts) -> their embeddings, through the gateway's embeddings path.
Embed = Callable[[str, list[str]], Awaitable[list[list[float]]]]
PROBE = "What is the dimension of this model's embeddings?"
MAX_FILE_BYTES = 16 * MIB
MAX_GOLDEN = 1000
BATCH = 64
DRIFT_QUERIES = 500


class GoldenLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    expected: list[str | int] = Field(default_factory=list)  # point ids or source ids
    filter: dict[str, str | int | bool] = Field(default_factory=dict)


class SourceProblem(Exception):
    pass


def model_names(config: GatewayConfig, alias: str) -> tuple[str, list[str]]:
    """The deployment model behind an alias (recorded in metadata), and every name a point's
    payload may give it: the alias, the model, the model without its provider."""
    models = [e.litellm_params.model for e in config.model_list if e.model_name == alias]
    names = {alias, *models, *(m.split("/", 1)[-1] for m in models)}
    return (models[0] if models else alias), sorted(names)


def _read(path: Path, what: str) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SourceProblem(f"{path}: {what} file is over 16 MiB")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourceProblem(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceProblem(f"{path}: {what} file unreadable: {exc}") from None


def read_golden(path: Path) -> list[GoldenLine]:
    lines = []
    for number, text in enumerate(_read(path, "golden queries").splitlines(), 1):
        if not text.strip():
            continue
        try:
            lines.append(GoldenLine.model_validate(json.loads(text)))
        except json.JSONDecodeError as exc:
            raise SourceProblem(f"{path}:{number}: not JSON: {exc.msg}") from None
        except ValidationError as exc:
            loc, message = first_problem(exc)
            raise SourceProblem(
                one_line(f"{path}:{number}: {format_loc(loc)}: {message}")
            ) from None
        if len(lines) > MAX_GOLDEN:
            raise SourceProblem(f"{path}: more than {MAX_GOLDEN} golden queries")
    return lines


def read_sources(path: Path) -> list[str]:
    """One source id a line; blank lines and lines starting with # are skipped."""
    text = _read(path, "sources")
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


@dataclass
class Preparer:
    """Gathers a collection's `Prepared`; the probe's dimension and the embedded golden
    queries are kept between checks (a file is embedded again only when it changes)."""

    config: GatewayConfig
    base: Path  # relative files are relative to the config file's folder
    embed: Embed | None
    queries: QueryEmbeddings | None = None
    dimensions: dict[str, int] = field(default_factory=dict)
    # (file, alias) -> (its mtime and size when embedded, the embedded queries)
    golden_cache: dict[tuple[str, str], tuple[Any, list[Golden]]] = field(default_factory=dict)

    def path(self, given: Path) -> Path:
        return given if given.is_absolute() else self.base / given

    async def _dimension(self, alias: str) -> tuple[int | None, str | None]:
        if alias in self.dimensions:
            return self.dimensions[alias], None
        if self.embed is None:
            return None, "no embeddings path to measure the model's dimension with"
        try:
            (vector,) = await self.embed(alias, [PROBE])
        except Exception as exc:  # any failure of the call is reported, not raised
            return None, f"embedding a probe with {alias} failed: {exc}"
        self.dimensions[alias] = len(vector)
        return len(vector), None

    async def _golden(self, collection: IndexCollection) -> list[Golden] | None:
        if collection.golden_queries is None:
            return None
        path = self.path(collection.golden_queries)
        stat = path.stat() if path.is_file() else None
        key, stamp = (str(path), collection.model), stat and (stat.st_mtime_ns, stat.st_size)
        cached = self.golden_cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        lines = read_golden(path)
        if self.embed is None:
            raise SourceProblem(f"{path}: no embeddings path to embed the golden queries with")
        vectors: list[list[float]] = []
        for start in range(0, len(lines), BATCH):
            texts = [line.query for line in lines[start : start + BATCH]]
            try:
                vectors += await self.embed(collection.model, texts)
            except Exception as exc:
                raise SourceProblem(f"{path}: embedding the golden queries failed: {exc}") from None
        golden = [
            Golden(line.query, vector, [str(e) for e in line.expected], dict(line.filter))
            for line, vector in zip(lines, vectors, strict=True)
        ]
        self.golden_cache[key] = (stamp, golden)
        return golden

    async def prepare(self, collection: IndexCollection) -> Prepared:
        model_id, names = model_names(self.config, collection.model)
        prepared = Prepared(model_id=model_id, model_names=names)
        prepared.dimension, prepared.dimension_reason = await self._dimension(collection.model)
        try:
            prepared.golden = await self._golden(collection)
        except SourceProblem as exc:
            prepared.golden_problem = str(exc)
        if collection.sources is not None:
            try:
                prepared.sources = read_sources(self.path(collection.sources))
            except SourceProblem as exc:
                prepared.sources_problem = str(exc)
        if self.queries is not None:
            try:  # a database read: off the event loop
                prepared.queries = await asyncio.to_thread(
                    self.queries.recent, collection.model, DRIFT_QUERIES
                )
            except Exception as exc:  # the check reports it; the others run
                prepared.queries_reason = f"reading the recent queries failed: {exc}"[:300]
        return prepared
