"""The gateway's two Redis clients, made from the one URL the operator gives.

- `redis://`, `rediss://` (TLS), `unix://`: redis-py's URL, query parameters included
  (`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs`, `ssl_check_hostname`); ACL
  users as `user:password@`.
- `redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/DB]` (or
  `rediss+sentinel://`): the master Sentinel names SERVICE, found again after a failover.
  The credentials are the master's; the sentinels are asked without (as redis-py's Sentinel
  client does by default).
- `redis+cluster://[user:password@]host:port[,host:port...]` (or `rediss+cluster://`):
  Redis Cluster, through redis-py's cluster client for the scripts too (the lean client
  speaks to one server). A script's keys must share a slot, so the key prefix
  (`GATEWAY_REDIS_PREFIX`) must hold a hash tag such as `{gw}:`; every gateway key then
  lives on one shard (the cluster gives failover, not spread).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from gateway.core.errors import ConfigError
from gateway.transport.resp import LuaScript, ScriptClient, _Address

_HASH_TAG = re.compile(r"\{[^{}]+\}")


class ScriptRunner(Protocol):
    async def run(self, script: LuaScript, keys: list[str], args: list[Any]) -> Any: ...

    async def connect(self) -> None: ...

    async def aclose(self) -> None: ...


class ClusterScriptClient:
    """Scripts through redis-py's RedisCluster (which routes by the keys' slot and follows
    MOVED/ASK); its owner closes the cluster client."""

    def __init__(self, cluster: Any) -> None:
        self._cluster = cluster

    async def run(self, script: LuaScript, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._cluster.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._cluster.eval(script.source, len(keys), *keys, *args)

    async def connect(self) -> None:
        await self._cluster.initialize()

    async def aclose(self) -> None:
        return None


def check_redis_url(url: str, prefix: str) -> None:
    """ValueError naming what is wrong with the URL (or the prefix it needs)."""
    address = _Address.parse(url)
    if address.cluster and not _HASH_TAG.search(prefix):
        raise ValueError(
            f"with Redis Cluster every key of one script must be in one slot: give "
            f"GATEWAY_REDIS_PREFIX a hash tag, e.g. {{gw}}: (it is {prefix!r})"
        )


def _redis_py_options(address: _Address) -> dict[str, Any]:
    options: dict[str, Any] = {"username": address.username, "password": address.password}
    if address.tls:
        options["ssl"] = True
        for name, value in address.options:
            if name == "ssl_check_hostname":
                options[name] = value.lower() in ("1", "true", "yes", "y")
            else:
                options[name] = value
    return options


def redis_clients(
    url: str, prefix: str, *, connect_timeout: float = 1.0, timeout: float = 2.0
) -> tuple[Any, ScriptRunner]:
    """redis-py's client (budget reads, seeding, readiness) and the script runner metering
    calls per request, both for `url`."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    try:
        check_redis_url(url, prefix)
    except ValueError as exc:
        raise ConfigError(f"the Redis URL (GATEWAY_REDIS_URL or redis_url): {exc}") from None
    address = _Address.parse(url)
    # No client-side retries: an unreachable Redis must fail fast into the documented
    # fail-open/fail-closed behaviour, not stall calls for seconds.
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if address.cluster:
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            **_redis_py_options(address),
            **timeouts,
        )
        return cluster, ClusterScriptClient(cluster)
    script_client = ScriptClient(url, connect_timeout=connect_timeout, timeout=timeout)
    if address.sentinels:
        from redis.asyncio.sentinel import Sentinel

        tls = {k: v for k, v in _redis_py_options(address).items() if k.startswith("ssl")}
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(address.sentinels), sentinel_kwargs={**tls, **timeouts}, **timeouts
        )
        master = sentinel.master_for(
            address.service or "", db=address.db, **_redis_py_options(address), **timeouts
        )
        return master, script_client
    return aioredis.from_url(url, **timeouts), script_client
