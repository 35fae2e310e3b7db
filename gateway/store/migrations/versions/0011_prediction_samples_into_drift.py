"""classic models' prediction samples become drift samples: prediction_samples is dropped,
its rows moved into drift_samples (one row per predicted row, by column name)

The inference path now feeds drift's sampler (gateway/drift/predictions.py names the columns
the same way); this moves what the old table held so no sample is lost. Self-contained: it
reads the old table's format, which no code writes any more.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BATCH = 500
MAX_COLUMNS = 64

old = sa.table(
    "prediction_samples",
    sa.column("id", sa.Integer()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("alias", sa.String()),
    sa.column("model_version", sa.String()),
    sa.column("rows", sa.Integer()),
    sa.column("inputs", sa.JSON()),
    sa.column("outputs", sa.JSON()),
)
versions = sa.table(
    "registry_versions",
    sa.column("name", sa.String()),
    sa.column("version", sa.Integer()),
    sa.column("signature", sa.JSON()),
)
new = sa.table(
    "drift_samples",
    sa.column("subject", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("alias", sa.String()),
    sa.column("values", sa.JSON()),
)


def upgrade() -> None:
    connection = op.get_bind()
    features = {
        (name, str(number)): (signature or {}).get("features")
        for name, number, signature in connection.execute(
            sa.select(versions.c.name, versions.c.version, versions.c.signature)
        )
    }
    last = 0
    while True:
        found = connection.execute(
            sa.select(old).where(old.c.id > last).order_by(old.c.id).limit(BATCH)
        ).all()
        if not found:
            break
        last = found[-1].id
        rows = [row for sample in found for row in _drift_rows(sample, features)]
        if rows:
            connection.execute(new.insert(), rows)
    with op.batch_alter_table("prediction_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_prediction_samples_alias_created")
    op.drop_table("prediction_samples")


def downgrade() -> None:
    # The table comes back empty: the samples stay drift samples.
    op.create_table(
        "prediction_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("alias", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.String(length=300), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("prediction_samples", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prediction_samples_alias_created", ["alias", "created_at"], unique=False
        )


def _drift_rows(sample: Any, features: dict[tuple[str, str], Any]) -> Iterator[dict[str, Any]]:
    name, at, version = (sample.model_version or "").rpartition("@")
    if not at:
        name, version = sample.alias, "unversioned"
    names = features.get((name, version))
    count = min(int(sample.rows), 1000)
    values: list[dict[str, Any]] = [{} for _ in range(count)]
    for tensors, named in ((sample.inputs, names), (sample.outputs, None)):
        for tensor in tensors or []:
            _spread(values, tensor, count, named)
    moment = sample.created_at
    if moment.tzinfo is None:  # SQLite gives naive UTC
        moment = moment.replace(tzinfo=UTC)
    subject = f"classic:{name}@{version}"
    for row in values:
        if row:
            yield {
                "subject": subject,
                "kind": "features",
                "created_at": moment,
                "alias": sample.alias,
                "values": row,
            }


def _spread(values: list[dict[str, Any]], tensor: Any, count: int, names: Any) -> None:
    shape, data = tensor.get("shape") or [], tensor.get("data") or []
    if len(shape) > 2 or (shape and shape[0] < count):
        return
    width = shape[1] if len(shape) == 2 else 1
    if width < 1 or width > MAX_COLUMNS or len(data) < count * width:
        return
    if len(shape) == 2 and isinstance(names, list) and len(names) == width:
        columns = [str(n) for n in names]
    elif width == 1:
        columns = [tensor["name"]]
    else:
        columns = [f"{tensor['name']}[{j}]" for j in range(width)]
    for index, row in enumerate(values):
        for j, column in enumerate(columns):
            row[column] = data[index * width + j]
