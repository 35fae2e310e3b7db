"""classic models: artifact fields of registry versions, the registry version and rows
predicted of request-log rows, prediction samples

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ARTIFACT_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("artifact", sa.String(length=1000)),
    ("artifact_sha256", sa.String(length=80)),
    ("framework", sa.String(length=16)),
    ("signature", sa.JSON()),
    ("trusted_types", sa.JSON()),
    ("trusted", sa.Boolean()),
    ("feature_stats", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("registry_versions", schema=None) as batch_op:
        for name, kind in ARTIFACT_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
        batch_op.create_index("ix_registry_versions_created_at", ["created_at"])
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_version", sa.String(length=300), nullable=True))
        # Rows written before it predicted nothing: 0, and the writer always gives a value.
        batch_op.add_column(
            sa.Column("predictions", sa.BigInteger(), nullable=False, server_default="0")
        )
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


def downgrade() -> None:
    with op.batch_alter_table("prediction_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_prediction_samples_alias_created")
    op.drop_table("prediction_samples")
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.drop_column("predictions")
        batch_op.drop_column("model_version")
    with op.batch_alter_table("registry_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_registry_versions_created_at")
        for name, _ in reversed(ARTIFACT_COLUMNS):
            batch_op.drop_column(name)
