"""Collections in the embedded engine, qdrant-edge: one shard folder per collection, with a
real HNSW index (qdrant-client's local mode searches by brute force, so its recall would
always be 1.0 and say nothing).

qdrant-edge keeps no collection metadata, so ours lives beside the shard's own files in
`gateway-metadata.json`, shaped like a Qdrant server's `config.metadata`. A shard can be open
in one process at a time (its write-ahead log is locked): it is opened for one check or one
build, then closed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from gateway.indexes.engine import (
    METADATA_KEY,
    Busy,
    Facts,
    Hit,
    Missing,
    PointId,
    Stored,
    Unavailable,
    Where,
)

METADATA_FILE = "gateway-metadata.json"
CONFIG_FILE = "edge_config.json"
RANGE_TYPES = {"Datetime", "Integer", "Float"}
PAGE = 10_000
# Qdrant's defaults for a new collection's HNSW graph.
DEFAULT_HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10_000}


def _filter(where: Where | None = None, has: str | None = None) -> qe.Filter | None:
    must: list[Any] = []
    for key, value in (where or {}).items():
        match = qe.MatchAny(any=list(value)) if isinstance(value, list) else qe.MatchValue(value)
        must.append(qe.FieldCondition(key=key, match=match))
    must_not: list[Any] | None = [qe.IsEmptyCondition(key=has)] if has else None
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not)


def _id(raw: Any) -> PointId:
    """Point ids as ints or text: the engine hands UUIDs back as uuid.UUID objects."""
    return raw if isinstance(raw, int) else str(raw)


def _problem(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


class EdgeCollection:
    engine = "qdrant-edge"

    def __init__(self, shard: Any, folder: Path, config: dict[str, Any]) -> None:
        self.shard = shard
        self.folder = folder
        self.where = str(folder)
        vectors = config.get("vectors") or {}
        if "" in vectors or len(vectors) != 1:
            self.using: str | None = None
            params = vectors.get("", {})
        else:
            (self.using, params), *_ = vectors.items()
        if not params:
            names = ", ".join(sorted(vectors)) or "none"
            raise Unavailable(
                f"{folder}: no single dense vector to check (named vectors: {names}); the "
                f"checks read the unnamed vector, or the only named one"
            )
        self.size = int(params["size"])
        self.distance = str(params.get("distance", "Cosine"))
        hnsw = params.get("hnsw_config") or config.get("hnsw_config") or {}
        self.hnsw = {k: int(hnsw[k]) for k in ("m", "ef_construct") if k in hnsw}

    @classmethod
    def open(cls, folder: Path) -> EdgeCollection:
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise Missing(f"no qdrant-edge collection at {folder}")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise Unavailable(f"{config_path}: unreadable ({exc})") from None
        try:
            shard = qe.EdgeShard.load(str(folder))
        except Exception as exc:  # the engine's boundary: its errors carry no types
            text = _problem(exc)
            if "WouldBlock" in text or "lock" in text.lower():
                raise Busy(
                    f"{folder} is open in another process (a gateway's background check, a "
                    f"build, or an application holding the shard); try again when it is done"
                ) from None
            raise Unavailable(f"{folder}: qdrant-edge cannot load it: {text}") from None
        try:
            return cls(shard, folder, config)
        except Unavailable:
            shard.close()
            raise

    @classmethod
    def create(
        cls,
        folder: Path,
        size: int,
        metadata: dict[str, Any],
        hnsw: dict[str, int] | None,
        range_fields: Sequence[str],
        keyword_fields: Sequence[str],
    ) -> EdgeCollection:
        graph = {**DEFAULT_HNSW, **(hnsw or {})}
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=size, distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(
                m=graph["m"],
                ef_construct=graph["ef_construct"],
                full_scan_threshold=graph["full_scan_threshold"],
            ),
        )
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            shard = qe.EdgeShard.create(str(folder), config)
            for name in range_fields:
                shard.update(
                    qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Datetime)
                )
            for name in keyword_fields:
                shard.update(
                    qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword)
                )
        except Exception as exc:
            raise Unavailable(f"{folder}: qdrant-edge cannot create it: {_problem(exc)}") from None
        created = cls(shard, folder, json.loads((folder / CONFIG_FILE).read_text("utf-8")))
        created.set_metadata(metadata)
        return created

    def facts(self) -> Facts:
        info = self.shard.info()
        range_indexed = frozenset(
            name
            for name, index in info.payload_schema.items()
            if str(index.data_type).rsplit(".", 1)[-1] in RANGE_TYPES
        )
        return Facts(
            points=info.points_count,
            size=self.size,
            distance=self.distance,
            indexed=info.indexed_vectors_count,
            segments=info.segments_count,
            metadata=self._metadata().get(METADATA_KEY),
            hnsw=self.hnsw,
            range_indexed=range_indexed,
            unknown={
                "status": "qdrant-edge keeps no collection status: it has no background "
                "optimizer (optimizations run when asked)",
                "optimizer": "qdrant-edge has no optimizer queue to report",
            },
        )

    def _vector(self, raw: Any) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        if isinstance(raw, dict):
            raw = raw.get(self.using or "")
        return None if raw is None else np.asarray(raw, dtype=np.float32)

    def sample(self, count: int) -> list[Stored]:
        request = qe.QueryRequest(
            limit=count,
            query=qe.Sample.Random,
            with_vector=True,
            with_payload=True,
        )
        return [
            Stored(_id(p.id), self._vector(p.vector), p.payload or {})
            for p in self.shard.query(request)
        ]

    def _request(
        self, vector: Sequence[float], limit: int, exact: bool, hnsw_ef: int | None, where: Where
    ) -> Any:
        values = vector.tolist() if isinstance(vector, np.ndarray) else list(vector)
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(values, using=self.using),
            filter=_filter(where),
            params=qe.SearchParams(hnsw_ef=hnsw_ef, exact=exact),
            with_payload=False,
            with_vector=False,
        )

    def search(
        self, vector: Sequence[float], limit: int, exact: bool, hnsw_ef: int | None, where: Where
    ) -> list[Hit]:
        found = self.shard.query(self._request(vector, limit, exact, hnsw_ef, where))
        return [Hit(_id(p.id), p.score) for p in found]

    def search_many(
        self,
        vectors: Sequence[Sequence[float]],
        limit: int,
        exact: bool,
        hnsw_ef: int | None,
        where: Sequence[Where],
    ) -> list[list[Hit]]:
        if not vectors:
            return []
        requests = [
            self._request(v, limit, exact, hnsw_ef, w) for v, w in zip(vectors, where, strict=True)
        ]
        found = self.shard.query_batch(qe.QueryBatchRequest(requests))
        return [[Hit(_id(p.id), p.score) for p in hits] for hits in found]

    def retrieve(self, ids: Sequence[PointId]) -> list[Stored]:
        records = self.shard.retrieve(list(ids), True, True)
        return [Stored(_id(r.id), self._vector(r.vector), r.payload or {}) for r in records]

    def count(self, where: Where | None = None, has: str | None = None) -> int:
        total: int = self.shard.count(qe.CountRequest(filter=_filter(where, has), exact=True))
        return total

    def newest(self, field: str) -> Any:
        order = qe.OrderBy(key=field, direction=qe.Direction.Desc)
        found = self.shard.query(qe.QueryRequest(limit=1, query=order, with_payload=[field]))
        return (found[0].payload or {}).get(field) if found else None

    def values(self, field: str) -> Iterator[Any]:
        offset: PointId | None = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=PAGE, with_payload=[field], with_vector=False
            )
            records, offset = self.shard.scroll(request)
            for record in records:
                yield (record.payload or {}).get(field)
            if offset is None or not records:
                return

    def _metadata(self) -> dict[str, Any]:
        path = self.folder / METADATA_FILE
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable metadata reads as none: the metadata check says so
        return found if isinstance(found, dict) else {}

    def set_metadata(self, entry: dict[str, Any]) -> None:
        metadata = {**self._metadata(), METADATA_KEY: entry}
        path = self.folder / METADATA_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)

    def upsert(self, points: Sequence[Stored]) -> None:
        batch = [
            qe.Point(
                id=p.id, vector=[] if p.vector is None else p.vector.tolist(), payload=p.payload
            )
            for p in points
        ]
        self.shard.update(qe.UpdateOperation.upsert_points(batch))

    def optimize(self) -> None:
        """Builds the HNSW index of what was written (qdrant-edge optimizes only when asked)."""
        self.shard.optimize()

    def close(self) -> None:
        try:
            self.shard.flush()
        finally:
            self.shard.close()
