"""The migrations build exactly what store/tables.py declares, on both databases: a column,
index or constraint added to one and not the other is found here, not on an upgraded
production database (where a missing index is a slow query nobody traces back)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from gateway.store.tables import metadata


def test_the_migrated_schema_is_the_declared_one(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
