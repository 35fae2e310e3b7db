"""Searching a configured collection with a text's embedding (for retrieval-augmented
prompts and their evals): the nearest points with their payloads."""

from __future__ import annotations

from typing import Any

from gateway.indexes.engine import Place, open_collection
from gateway.indexes.models import SearchHit


def nearest(
    place: Place, name: str, vector: list[float], limit: int, where: dict[str, Any]
) -> list[SearchHit]:
    """Blocking: run it in a worker thread."""
    collection = open_collection(place, name)
    try:
        hits = collection.search(vector, limit, False, None, where)
        payloads = {p.id: p.payload for p in collection.retrieve([h.id for h in hits])}
    finally:
        collection.close()
    return [SearchHit(id=h.id, score=h.score, payload=payloads.get(h.id, {})) for h in hits]
