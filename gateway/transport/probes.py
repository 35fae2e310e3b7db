"""Whether Redis and a Qdrant server answer, for readiness (gateway/core/probes.py bounds
and caches each check)."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.core.probes import Probe

# Each check's bound: a dependency slower than this to answer a ping is "not answering".
# Below the clients' own timeouts (Redis: 2 s per command), so the bound is what ends a
# hung check's wait, with the same words whichever dependency hangs.
PROBE_TIMEOUT_S = 1.0


def redis_probe(client: Any, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """PING on the gateway's own redis-py client (its socket timeouts end a hung check)."""

    async def ping() -> None:
        await client.ping()

    return Probe(ping, timeout)


def qdrant_probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """Qdrant's own readiness endpoint, `GET /readyz` (no API key needed), answering 200."""
    address = url.rstrip("/") + "/readyz"

    async def ready() -> None:
        async with httpx.AsyncClient(timeout=timeout + 1, trust_env=False) as client:
            response = await client.get(address)
        if response.status_code != 200:
            raise QdrantNotReady(f"GET {address} answered {response.status_code}")

    return Probe(ready, timeout)


class QdrantNotReady(Exception):
    pass
