"""Lineage both ways: ancestors walk `base` up, descendants are versions built on this one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, select, tuple_

from gateway.store.tables import registry_versions as versions

# Lineage is acyclic by construction (a base must exist before the version built on it);
# the bound only keeps a damaged database from looping.
MAX_DEPTH = 1000


def ancestors(connection: Connection, row: Row[Any]) -> list[Row[Any]]:
    """The chain of registry bases, nearest first; the last one may name an external base."""
    chain: list[Row[Any]] = []
    while row.base_name is not None and len(chain) < MAX_DEPTH:
        parent = connection.execute(
            select(versions).where(
                versions.c.name == row.base_name, versions.c.version == row.base_version
            )
        ).first()
        if parent is None:
            break
        chain.append(parent)
        row = parent
    return chain


def descendants(connection: Connection, row: Row[Any]) -> list[tuple[Row[Any], int]]:
    """Every version built on this one, directly or not, breadth first, with its depth."""
    found: list[tuple[Row[Any], int]] = []
    seen = {(row.name, row.version)}
    frontier = [(row.name, row.version)]
    depth = 0
    while frontier and depth < MAX_DEPTH:
        depth += 1
        children = connection.execute(
            select(versions)
            .where(tuple_(versions.c.base_name, versions.c.base_version).in_(frontier))
            .order_by(versions.c.created_at, versions.c.name, versions.c.version)
        ).all()
        frontier = []
        for child in children:
            key = (child.name, child.version)
            if key not in seen:
                seen.add(key)
                found.append((child, depth))
                frontier.append(key)
    return found
