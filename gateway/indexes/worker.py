"""`python -m gateway.indexes.worker`: one collection's check in a process of its own.

The gateway runs its background checks here, so the searches, scrolls and numpy work of a
check hold neither the gateway's event loop nor its GIL (qdrant-edge keeps the GIL while it
searches), and the collection's memory is given back when the check ends. The job arrives as
JSON on stdin; the `CollectionHealth` leaves as JSON on stdout. The process runs at a lower
priority (nice 10), so on a busy machine requests are served first.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

NICE = 10


def job(config: Any, place: Any, prepared: Any, now: datetime) -> dict[str, Any]:
    return {
        "collection": config.model_dump(mode="json"),
        "place": {
            "url": place.url,
            "folder": str(place.folder) if place.folder else None,
            "api_key": place.api_key,
        },
        "prepared": prepared.to_json(),
        "now": now.isoformat(),
    }


def main() -> int:
    os.nice(NICE)
    from gateway.core.index_config import IndexCollection
    from gateway.indexes.engine import Place
    from gateway.indexes.runner import check_collection
    from gateway.indexes.scene import Prepared

    try:
        data = json.load(sys.stdin)
        place = data["place"]
        health = check_collection(
            IndexCollection.model_validate(data["collection"]),
            Place(
                place["url"], Path(place["folder"]) if place["folder"] else None, place["api_key"]
            ),
            Prepared.from_json(data["prepared"]),
            datetime.fromisoformat(data["now"]),
        )
    except Exception as exc:  # reported to the gateway, which logs it
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(health.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
