"""Recording which embedding model made a collection's vectors, in the collection's own
metadata (Qdrant's `config.metadata`; beside the shard for qdrant-edge), when the gateway
creates a collection or adopts an existing one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.indexes.engine import Collection

RECORDED_BY = "llmops-gateway"


class AdoptionRefused(Exception):
    """The collection does not fit the model: adopting it would record a falsehood."""


def metadata_entry(model_id: str, alias: str, dimension: int) -> dict[str, Any]:
    return {
        "model": model_id,
        "alias": alias,
        "dimension": dimension,
        "recorded_by": RECORDED_BY,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def adopt(
    collection: Collection, model_id: str, alias: str, dimension: int | None, force: bool = False
) -> dict[str, Any]:
    """Records the model in the collection's metadata, after checking the vectors' size
    against the model's dimension (measured by embedding a probe), and that no other model
    is recorded there (unless `force`)."""
    facts = collection.facts()
    if dimension is not None and facts.size != dimension:
        raise AdoptionRefused(
            f"{collection.where}: its vectors have {facts.size} dimensions and {alias} makes "
            f"{dimension}: they were not made by this model"
        )
    recorded = facts.metadata or {}
    if recorded.get("model") not in (None, model_id) and not force:
        raise AdoptionRefused(
            f"{collection.where}: its metadata records {recorded['model']!r}, not {model_id!r} "
            f"(--force records {model_id!r} anyway, if the vectors were remade with it)"
        )
    entry = metadata_entry(model_id, alias, facts.size)
    collection.set_metadata(entry)
    return entry
