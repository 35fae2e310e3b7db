"""The access log (GATEWAY_ACCESS_LOG, off by default): one JSON line per HTTP request on the
`gateway.access` logger, written when the response has ended (a stream's line comes at its
end, with its whole duration).

It says what a request was and how it ended, never what it carried: no bodies, no query
strings (they can hold tokens), no keys, only the id of the key that authenticated.
"""

from __future__ import annotations

import logging
import time

import orjson
from starlette.types import Scope

log = logging.getLogger("gateway.access")

# Where a FastAPI route's authentication leaves the caller's key id for the edge to log.
KEY_ID = "gateway.key_id"


def write(scope: Scope, status: int, started: float, request_id: str, key_id: str | None) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    line = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "ms": round((time.perf_counter() - started) * 1000, 3),
        "request_id": request_id,
        "key_id": key_id if key_id is not None else scope.get(KEY_ID),
    }
    log.info("%s", orjson.dumps(line).decode())
