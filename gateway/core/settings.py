"""Process settings, from the environment (prefix GATEWAY_) or explicit arguments."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="forbid")

    config: Path = Path("config/gateway.yaml")
    data_dir: Path = Path(".gateway")
    database_url: str | None = None
    # The longest any one database call may take (connecting, a statement, a pool checkout,
    # a server gone silent); past it the request log spools and admin routes answer 503.
    database_timeout: float = Field(default=5.0, gt=0, le=600)
    redis_url: str | None = None
    qdrant_url: str | None = None
    master_key: str | None = None
    prompts_dir: Path = Path("prompts")
    otlp_endpoint: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    # Bodies above this are refused with 413 before they are read whole.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    log_level: str = "info"
    # Redis keys start with this, so several gateways (or test runs) can share one Redis.
    redis_prefix: str = "gw:"
    # When Redis is unreachable: refuse calls with 503 (false) or let them through (true).
    redis_fail_open: bool = False
    # With Redis: how many calls of one key a replica may admit from one reservation (a
    # lease, see gateway/metering/leases.py); 1 admits every call in Redis.
    meter_lease_calls: int = Field(default=256, ge=1)
    # Failed authentications (unknown keys) one client address may make per minute; beyond
    # it, 429 before the key lookup.
    auth_failures_per_minute: int = Field(default=60, ge=1)
    # A connection must send a complete request head within this many seconds of opening
    # or of its previous response (also the keep-alive idle timeout), or it is closed.
    header_timeout: float = Field(default=5.0, gt=0, le=300)
    # Open connections one worker serves at once; beyond it, new ones get 503 and are closed.
    max_connections: int = Field(default=4096, ge=1)
    # Load the local embedding model while starting (in a worker thread; /readyz answers 503
    # until it is loaded) instead of on the first embeddings call, which then waits seconds.
    preload_embeddings: bool = False
    # One structured line per HTTP request on the `gateway.access` logger (method, path,
    # status, ms, request id, key id; never bodies, queries or keys).
    access_log: bool = False
    # Run the config's periodic vector index checks in this process (indexes.interval);
    # in-process gateways of CLI commands turn them off.
    index_checks: bool = True
