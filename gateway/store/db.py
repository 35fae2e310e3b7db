"""Engines and migrations: SQLite (WAL) by default, PostgreSQL via GATEWAY_DATABASE_URL."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text

from gateway.store import postgres

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Replicas starting together must not run the same migration twice.
MIGRATION_LOCK = 727_001


def is_shared(url: str | None) -> bool:
    """A database other processes may serve from too (PostgreSQL), unlike the data dir's
    SQLite file, which belongs to the processes of one machine."""
    return bool(url) and not str(url).startswith("sqlite")


def database_url(explicit: str | None, data_dir: Path) -> str:
    if explicit:
        return explicit
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / 'gateway.db').resolve()}"


@contextlib.contextmanager
def _sqlite_lock(engine: Engine) -> Iterator[None]:
    """Workers started together (`--workers N`) take turns migrating one SQLite file;
    PostgreSQL uses an advisory lock instead."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# The longest one database call may take (GATEWAY_DATABASE_TIMEOUT): statements, opening a
# connection, waiting for one from the pool, and a server that went silent.
DEFAULT_TIMEOUT_S = 5.0


def make_engine(url: str, timeout: float = DEFAULT_TIMEOUT_S) -> Engine:
    if url.startswith("sqlite"):
        # SQLite never hangs on a network; its busy timeout lets workers sharing the file
        # take turns writing, generously (a migration by another worker can take a while).
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    engine = create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=timeout
    )
    if engine.dialect.driver == "psycopg":

        @event.listens_for(engine, "do_connect")
        def _bounded(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
            return postgres.connect(cargs, cparams, timeout)

    return engine


def head_revision() -> str:
    """The newest migration's revision: files are named NNNN_what.py with revision "NNNN"."""
    return max(
        path.name[:4] for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    )


@contextlib.contextmanager
def _unbounded(connection: Connection) -> Iterator[None]:
    """No statement timeout or answer deadline: a migration (or waiting for another replica's
    migration) may take long; it runs at start-up, where hanging is visible."""
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SET LOCAL statement_timeout = 0"))
    dbapi_connection = connection.connection.dbapi_connection
    previous = postgres.set_answer_timeout(dbapi_connection, None)
    try:
        yield
    finally:
        postgres.set_answer_timeout(dbapi_connection, previous)


def migrate(engine: Engine) -> None:
    with engine.connect() as probe:
        # Bounded: a database that does not answer fails the start with a clear error.
        probe.execute(text("SELECT 1"))
    with _sqlite_lock(engine), engine.begin() as connection, _unbounded(connection):
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        if inspect(connection).has_table("alembic_version"):
            current = connection.execute(text("SELECT version_num FROM alembic_version"))
            if current.scalar() == head_revision():
                # Up to date, the usual case for a restart or a new replica: importing
                # alembic alone would add ~0.2 s to the start.
                return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
