"""Collections on a Qdrant server, through qdrant-client over REST: everything the checks ask
is answered here, status and optimizer queue included.

Not yet run against a live server (none can run where this was built); the calls are
qdrant-client's documented ones, and each failure becomes `Unavailable` with the server's
words, so a check reports "not available" rather than a wrong value.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from gateway.indexes.engine import (
    METADATA_KEY,
    Facts,
    Hit,
    Missing,
    PointId,
    Stored,
    Unavailable,
    Where,
)

ENV_PREFIX = "os.environ/"
PAGE = 10_000
RANGE_TYPES = {"datetime", "integer", "float"}
TIMEOUT_S = 30


def _api_key(value: str | None) -> str | None:
    if value and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        found = os.environ.get(name)
        if found is None:
            raise Unavailable(f"the collection's api_key names {name}, which is not set")
        return found
    return value


def _filter(where: Where | None = None, has: str | None = None) -> qm.Filter | None:
    must: list[Any] = []
    for key, value in (where or {}).items():
        match: Any = (
            qm.MatchAny(any=list(value)) if isinstance(value, list) else qm.MatchValue(value=value)
        )
        must.append(qm.FieldCondition(key=key, match=match))
    must_not: list[Any] | None = (
        [qm.IsEmptyCondition(is_empty=qm.PayloadField(key=has))] if has else None
    )
    if not must and not must_not:
        return None
    return qm.Filter(must=must or None, must_not=must_not)


def _vectors(params: Any) -> tuple[str | None, Any]:
    """The vector the checks read: the unnamed one, or the only named one."""
    vectors = params.vectors
    if isinstance(vectors, qm.VectorParams):
        return None, vectors
    if isinstance(vectors, dict) and len(vectors) == 1:
        ((name, chosen),) = vectors.items()
        return name, chosen
    names = ", ".join(sorted(vectors or {})) or "none"
    raise Unavailable(f"no single dense vector to check (named vectors: {names})")


class ServerCollection:
    engine = "qdrant"

    def __init__(self, client: QdrantClient, url: str, name: str) -> None:
        self.client = client
        self.name = name
        self.where = f"{url}/collections/{name}"
        info = self._call(client.get_collection, name)
        self.using, self.params = _vectors(info.config.params)

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except UnexpectedResponse as exc:
            if exc.status_code == 404:
                raise Missing(f"no collection {self.name!r} on {self.where}") from None
            raise Unavailable(f"{self.where}: {exc.status_code} {exc.reason_phrase}") from None
        except Exception as exc:  # the client's boundary: connection and protocol errors
            text = " ".join(str(exc).split())[:300]
            raise Unavailable(f"{self.where}: {type(exc).__name__}: {text}") from None

    @classmethod
    def open(cls, url: str, name: str, api_key: str | None) -> ServerCollection:
        client = QdrantClient(url=url, api_key=_api_key(api_key), timeout=TIMEOUT_S)
        try:
            return cls(client, url, name)
        except Unavailable:
            client.close()
            raise

    @classmethod
    def create(
        cls,
        url: str,
        name: str,
        api_key: str | None,
        size: int,
        metadata: dict[str, Any],
        hnsw: dict[str, int] | None,
        range_fields: Sequence[str],
        keyword_fields: Sequence[str],
    ) -> ServerCollection:
        client = QdrantClient(url=url, api_key=_api_key(api_key), timeout=TIMEOUT_S)
        try:
            client.create_collection(
                name,
                vectors_config=qm.VectorParams(size=size, distance=qm.Distance.COSINE),
                hnsw_config=qm.HnswConfigDiff(**hnsw) if hnsw else None,
                metadata={METADATA_KEY: metadata},
            )
            for field in range_fields:
                client.create_payload_index(name, field, qm.PayloadSchemaType.DATETIME)
            for field in keyword_fields:
                client.create_payload_index(name, field, qm.PayloadSchemaType.KEYWORD)
        except Exception as exc:
            client.close()
            raise Unavailable(f"{url}: cannot create {name!r}: {exc}") from None
        return cls(client, url, name)

    @classmethod
    def drop(cls, url: str, name: str, api_key: str | None) -> None:
        client = QdrantClient(url=url, api_key=_api_key(api_key), timeout=TIMEOUT_S)
        try:
            client.delete_collection(name)
        except Exception as exc:
            raise Unavailable(f"{url}: cannot delete {name!r}: {exc}") from None
        finally:
            client.close()

    def facts(self) -> Facts:
        info = self._call(self.client.get_collection, self.name)
        optimizer = info.optimizer_status
        error = getattr(optimizer, "error", None)
        unknown: dict[str, str] = {}
        queued: int | None = None
        try:
            progress = self.client.get_optimizations(self.name)
            queued = progress.summary.queued_optimizations
        except Exception as exc:  # older servers have no /optimizations
            unknown["queued_optimizations"] = f"the server does not report it ({exc})"[:200]
        schema = info.payload_schema or {}
        hnsw = self.params.hnsw_config or info.config.hnsw_config
        metadata = info.config.metadata or {}
        return Facts(
            points=info.points_count or 0,
            size=int(self.params.size),
            distance=str(getattr(self.params.distance, "value", self.params.distance)),
            indexed=info.indexed_vectors_count,
            segments=info.segments_count,
            status=str(getattr(info.status, "value", info.status)),
            optimizer="ok" if error is None else str(error),
            queued_optimizations=queued,
            metadata=metadata.get(METADATA_KEY),
            hnsw={k: int(v) for k in ("m", "ef_construct") if (v := getattr(hnsw, k, None))},
            range_indexed=frozenset(
                field
                for field, index in schema.items()
                if str(getattr(index.data_type, "value", index.data_type)) in RANGE_TYPES
            ),
            unknown=unknown,
        )

    def _vector(self, raw: Any) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        if isinstance(raw, dict):
            raw = raw.get(self.using or "")
        return None if raw is None else np.asarray(raw, dtype=np.float32)

    def sample(self, count: int) -> list[Stored]:
        found = self._call(
            self.client.query_points,
            self.name,
            query=qm.SampleQuery(sample=qm.Sample.RANDOM),
            using=self.using,
            limit=count,
            with_payload=True,
            with_vectors=True,
        )
        return [Stored(p.id, self._vector(p.vector), p.payload or {}) for p in found.points]

    def _request(
        self, vector: Sequence[float], limit: int, exact: bool, hnsw_ef: int | None, where: Where
    ) -> qm.QueryRequest:
        return qm.QueryRequest(
            query=[float(x) for x in vector],
            using=self.using,
            filter=_filter(where),
            params=qm.SearchParams(hnsw_ef=hnsw_ef, exact=exact),
            limit=limit,
            with_payload=False,
        )

    def search(
        self, vector: Sequence[float], limit: int, exact: bool, hnsw_ef: int | None, where: Where
    ) -> list[Hit]:
        return self.search_many([vector], limit, exact, hnsw_ef, [where])[0]

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
        found = self._call(self.client.query_batch_points, self.name, requests)
        return [[Hit(p.id, p.score) for p in response.points] for response in found]

    def retrieve(self, ids: Sequence[PointId]) -> list[Stored]:
        found = self._call(
            self.client.retrieve, self.name, list(ids), with_payload=True, with_vectors=True
        )
        return [Stored(r.id, self._vector(r.vector), r.payload or {}) for r in found]

    def count(self, where: Where | None = None, has: str | None = None) -> int:
        found = self._call(self.client.count, self.name, _filter(where, has), exact=True)
        return int(found.count)

    def newest(self, field: str) -> Any:
        order = qm.OrderBy(key=field, direction=qm.Direction.DESC)
        records, _ = self._call(
            self.client.scroll, self.name, limit=1, order_by=order, with_payload=[field]
        )
        return (records[0].payload or {}).get(field) if records else None

    def values(self, field: str) -> Iterator[Any]:
        offset: PointId | None = None
        while True:
            records, offset = self._call(
                self.client.scroll,
                self.name,
                limit=PAGE,
                offset=offset,
                with_payload=[field],
                with_vectors=False,
            )
            for record in records:
                yield (record.payload or {}).get(field)
            if offset is None or not records:
                return

    def set_metadata(self, entry: dict[str, Any]) -> None:
        # Merged with the collection's other metadata by the server.
        self._call(self.client.update_collection, self.name, metadata={METADATA_KEY: entry})

    def upsert(self, points: Sequence[Stored]) -> None:
        batch = [
            qm.PointStruct(
                id=p.id,
                vector={self.using: p.vector.tolist()} if self.using else p.vector.tolist(),
                payload=p.payload,
            )
            for p in points
            if p.vector is not None
        ]
        self._call(self.client.upsert, self.name, batch, wait=True)

    def optimize(self) -> None:
        """The server indexes in the background; nothing to do now."""

    def close(self) -> None:
        self.client.close()
