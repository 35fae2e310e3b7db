"""LiteLLM's `general_settings` the gateway takes over: the master key and the database.

Precedence, most specific first:
- master key: GATEWAY_MASTER_KEY, else `general_settings.master_key`, else LITELLM_MASTER_KEY
  (LiteLLM's own variable, read as LiteLLM reads it when the file names no key), else the key
  saved in the data dir, else a new one (identity/auth.py resolve_master_key);
- database: GATEWAY_DATABASE_URL, else `general_settings.database_url` (LiteLLM's PostgreSQL:
  the gateway creates its own tables there, beside LiteLLM's, and reads none of LiteLLM's),
  else SQLite in the data dir.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gateway.core.config import GatewayConfig
from gateway.core.errors import ConfigError
from gateway.core.settings import Settings

LITELLM_MASTER_KEY = "LITELLM_MASTER_KEY"

# Prisma's connection-string options (LiteLLM's database client); libpq refuses them.
PRISMA_ONLY = frozenset(
    {"connection_limit", "pool_timeout", "pgbouncer", "socket_timeout", "statement_cache_size"}
)


def settings_from_config(settings: Settings, config: GatewayConfig) -> Settings:
    """`settings` with the master key and database URL the config gives, where the
    environment does not; a ConfigError when the config names an unset variable for one."""
    report = config.report
    updates: dict[str, str] = {}
    if not settings.master_key:
        if report.master_key.problem is not None:
            raise ConfigError(report.master_key.problem)
        key = report.master_key.value or report.environment.get(LITELLM_MASTER_KEY)
        if key:
            updates["master_key"] = key
    if not settings.database_url:
        url = database_url_from_config(config)
        if url:
            updates["database_url"] = url
    return settings.model_copy(update=updates) if updates else settings


def database_url_from_config(config: GatewayConfig) -> str | None:
    """general_settings.database_url as SQLAlchemy takes it; a ConfigError when it names an
    unset variable."""
    given = config.report.database_url
    if given.problem is not None:
        raise ConfigError(given.problem)
    return sqlalchemy_url(given.value) if given.value else None


def sqlalchemy_url(url: str) -> str:
    """LiteLLM's (Prisma's) PostgreSQL URL as SQLAlchemy with psycopg takes it: the driver
    named, Prisma-only options dropped, and `schema=` as libpq's search_path option."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        return url  # already SQLAlchemy's (postgresql+psycopg://, sqlite:///...)
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "schema":
            query.append(("options", f"-csearch_path={value}"))
        elif name not in PRISMA_ONLY:
            query.append((name, value))
    return urlunsplit(parts._replace(scheme="postgresql+psycopg", query=urlencode(query)))
