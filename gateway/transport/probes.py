"""Whether Redis and a Qdrant server answer, for readiness (gateway/core/probes.py bounds
and caches each check)."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.core.probes import Probe, Refused
from gateway.transport.redis_refusal import refusal

# Each check's bound: a dependency slower than this to answer a ping is "not answering".
# Below the clients' own timeouts (Redis: 2 s per command), so the bound is what ends a
# hung check's wait, with the same words whichever dependency hangs.
PROBE_TIMEOUT_S = 1.0


# What metering does, in one round trip: a Lua script reading a key under the gateway's
# prefix. An ACL user allowed to PING may still be refused scripts or those keys.
ACCESS_CHECK = "return redis.call('EXISTS', KEYS[1])"


def redis_probe(client: Any, prefix: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """The access check on the gateway's own redis-py client (its socket timeouts end a hung
    check); a Redis refusing the gateway is reported as what to fix."""

    async def check() -> None:
        try:
            await client.eval(ACCESS_CHECK, 1, f"{prefix}readyz")
        except Exception as exc:
            denied = refusal(exc)
            if denied is None:
                raise
            said = str(exc).strip().splitlines()
            raise Refused(f"{denied} (Redis: {said[0] if said else type(exc).__name__})") from exc

    return Probe(check, timeout)


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
