"""Small row helpers the stores share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table


def put_row(
    connection: Connection,
    table: Table,
    key: dict[str, Any],
    values: dict[str, Any],
    *,
    exists: bool,
) -> None:
    """Inserts or updates the row with this key; the caller has read it, so knows which
    (a portable upsert: SQLite and PostgreSQL spell ON CONFLICT differently)."""
    if exists:
        where = [table.c[column] == value for column, value in key.items()]
        connection.execute(table.update().where(*where).values(**values))
    else:
        connection.execute(table.insert().values(**key, **values))
