"""How long a full health check of a large qdrant-edge collection takes (README figure).

    python -m bench.index_check [--points 100000] [--dim 384] [--folder DIR]

Builds (once, kept in --folder) a collection of clustered random vectors the size of
all-MiniLM-L6-v2's (384), with a timestamp and a source id on each point, then times
`gateway index check`'s work on it: every check, and the recall/latency curve per hnsw_ef.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from gateway.core.index_config import IndexCollection
from gateway.indexes.adopt import adopt
from gateway.indexes.engine import Place, Stored, create_collection, open_collection
from gateway.indexes.runner import check_collection
from gateway.indexes.scene import Prepared

MODEL = "local/all-MiniLM-L6-v2"


def build(folder: Path, points: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((500, dim))
    now = datetime.now(UTC)
    place = Place(None, folder)
    started = time.perf_counter()
    collection = create_collection(place, folder.name, dim, {}, None, ["updated_at"], ["source"])
    for start in range(0, points, 5000):
        count = min(5000, points - start)
        vectors = centers[rng.integers(0, len(centers), count)]
        vectors = (vectors + 0.5 * rng.standard_normal((count, dim))).astype(np.float32)
        collection.upsert(
            [
                Stored(
                    start + i,
                    vectors[i],
                    {
                        "embedding_model": MODEL,
                        "source": f"doc-{(start + i) // 10}",
                        "updated_at": (now - timedelta(minutes=start + i)).isoformat(),
                    },
                )
                for i in range(count)
            ]
        )
    written = time.perf_counter()
    collection.optimize()
    adopt(collection, MODEL, MODEL, dim)
    collection.close()
    print(
        f"built {points} x {dim}: written in {written - started:.1f} s, indexed in "
        f"{time.perf_counter() - written:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--folder", type=Path, default=Path(".gateway/bench-index"))
    args = parser.parse_args()
    folder = args.folder / f"bench-{args.points}x{args.dim}"
    try:
        open_collection(Place(None, folder), folder.name).close()
    except Exception:
        build(folder, args.points, args.dim)
    config = IndexCollection(
        name=folder.name,
        model=MODEL,
        timestamp_field="updated_at",
        source_field="source",
        sources=None,
    )
    sources = [f"doc-{i}" for i in range(args.points // 10)]
    rng = np.random.default_rng(1)
    prepared = Prepared(
        model_id=MODEL,
        model_names=[MODEL],
        dimension=args.dim,
        sources=sources,
        queries=rng.standard_normal((500, args.dim)).tolist(),
    )
    started = time.perf_counter()
    health = check_collection(config, Place(None, folder), prepared)
    took = time.perf_counter() - started
    for check in health.checks:
        print(f"  {check.name:16} {check.status:13} {check.summary}")
    print(f"full check of {health.points} points: {took:.1f} s ({health.status})")


if __name__ == "__main__":
    main()
