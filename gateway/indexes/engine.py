"""What the checks ask of a collection, whichever engine holds it: the embedded qdrant-edge
shard (`edge.py`) or a Qdrant server (`server.py`). Library errors become `Unavailable` at
these two modules; nothing above them knows which library answered.

A fact an engine cannot report is None with its reason in `Facts.unknown`, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway.core.index_config import URL, IndexCollection

if TYPE_CHECKING:
    import numpy as np

METADATA_KEY = "llmops_gateway"  # our entry in the collection's metadata
PointId = int | str
Where = dict[str, Any]  # payload field -> the value it must equal


class Unavailable(Exception):
    """The collection cannot be opened or queried; the message says why and what to do."""


class Missing(Unavailable):
    """The collection does not exist (yet)."""


class Busy(Unavailable):
    """Another process holds the collection for now (a qdrant-edge shard opens in one)."""


@dataclass(slots=True)
class Stored:
    id: PointId
    vector: np.ndarray[Any, np.dtype[np.float32]] | None
    payload: dict[str, Any]


@dataclass(slots=True)
class Facts:
    points: int
    size: int  # the vectors' dimension
    distance: str
    indexed: int | None = None
    segments: int | None = None
    status: str | None = None  # green / yellow / grey / red
    optimizer: str | None = None  # "ok", or the optimizer's error
    queued_optimizations: int | None = None
    metadata: dict[str, Any] | None = None  # our entry in the collection's metadata
    hnsw: dict[str, int] = field(default_factory=dict)  # m, ef_construct
    range_indexed: frozenset[str] = frozenset()  # payload fields with a range index
    unknown: dict[str, str] = field(default_factory=dict)  # fact -> why the engine cannot say


@dataclass(slots=True)
class Hit:
    id: PointId
    score: float


class Collection(Protocol):
    """One open collection. Calls block: the checks run in a worker thread or process."""

    engine: str  # "qdrant-edge" or "qdrant"
    where: str  # its folder or URL, for messages

    def facts(self) -> Facts: ...

    def sample(self, count: int) -> list[Stored]:
        """Up to `count` random points with their vectors and payloads."""
        ...

    def search(
        self, vector: Sequence[float], limit: int, exact: bool, hnsw_ef: int | None, where: Where
    ) -> list[Hit]: ...

    def search_many(
        self,
        vectors: Sequence[Sequence[float]],
        limit: int,
        exact: bool,
        hnsw_ef: int | None,
        where: Sequence[Where],
    ) -> list[list[Hit]]:
        """One search per vector, batched (for results, not for latency)."""
        ...

    def retrieve(self, ids: Sequence[PointId]) -> list[Stored]: ...

    def count(self, where: Where | None = None, has: str | None = None) -> int:
        """Points matching `where` (a list value matches any of its items), or having a
        non-empty `has` field."""
        ...

    def newest(self, field: str) -> Any:
        """The greatest value of a range-indexed payload field (None: no point has it)."""
        ...

    def values(self, field: str) -> Iterator[Any]:
        """The field's value on every point (None where absent), paged."""
        ...

    def set_metadata(self, entry: dict[str, Any]) -> None: ...

    def upsert(self, points: Sequence[Stored]) -> None: ...

    def optimize(self) -> None:
        """Brings the index up to date with what was written (edge: builds it now)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Place:
    """Where a configured collection lives: a server URL, or the folder of an edge shard."""

    url: str | None
    folder: Path | None
    api_key: str | None = None

    @property
    def where(self) -> str:
        return self.url if self.url is not None else str(self.folder)


def place_of(collection: IndexCollection, data_dir: Path, qdrant_url: str | None) -> Place:
    location = collection.location or qdrant_url
    if location and URL.match(location):
        return Place(location.rstrip("/"), None, collection.api_key)
    folder = Path(location) if location else Path("indexes")
    if not folder.is_absolute():
        folder = data_dir / folder
    return Place(None, folder / collection.name)


def open_collection(place: Place, name: str) -> Collection:
    """Opens an existing collection; Missing when there is none, Unavailable when it cannot
    be reached (a server down, a shard another process holds)."""
    if place.url is not None:
        from gateway.indexes.server import ServerCollection

        return ServerCollection.open(place.url, name, place.api_key)
    from gateway.indexes.edge import EdgeCollection

    assert place.folder is not None
    return EdgeCollection.open(place.folder)


def create_collection(
    place: Place,
    name: str,
    size: int,
    metadata: dict[str, Any],
    hnsw: dict[str, int] | None = None,
    range_fields: Sequence[str] = (),
    keyword_fields: Sequence[str] = (),
) -> Collection:
    """A new, empty cosine collection with our metadata and the payload indexes the checks
    use (a datetime range index for timestamps, keyword indexes for filters)."""
    if place.url is not None:
        from gateway.indexes.server import ServerCollection

        return ServerCollection.create(
            place.url, name, place.api_key, size, metadata, hnsw, range_fields, keyword_fields
        )
    from gateway.indexes.edge import EdgeCollection

    assert place.folder is not None
    return EdgeCollection.create(place.folder, size, metadata, hnsw, range_fields, keyword_fields)


def drop_collection(place: Place, name: str) -> None:
    """Deletes a collection and its data (the example's rebuild; nothing else calls it)."""
    if place.url is not None:
        from gateway.indexes.server import ServerCollection

        ServerCollection.drop(place.url, name, place.api_key)
        return
    import shutil

    assert place.folder is not None
    if place.folder.exists():
        shutil.rmtree(place.folder)
