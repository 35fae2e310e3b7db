"""drift monitoring: samples, references, runs, states

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def upgrade() -> None:
    op.create_table(
        "drift_samples",
        _id(),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prompt_name", sa.String(length=200), nullable=True),
        sa.Column("prompt_version", sa.String(length=64), nullable=True),
        sa.Column("alias", sa.String(length=200), nullable=True),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("input_text", sa.Text(), nullable=True),
        sa.Column("output_text", sa.Text(), nullable=True),
        sa.Column("input_embedding", sa.LargeBinary(), nullable=True),
        sa.Column("output_embedding", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_drift_samples_subject_created", "drift_samples", ["subject", "created_at"])
    op.create_table(
        "drift_references",
        sa.Column("subject", sa.String(length=300), primary_key=True),
        sa.Column("spec", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "drift_runs",
        _id(),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
    )
    op.create_index("ix_drift_runs_subject_computed", "drift_runs", ["subject", "computed_at"])
    op.create_table(
        "drift_states",
        sa.Column("subject", sa.String(length=300), primary_key=True),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("drift_states")
    op.drop_index("ix_drift_runs_subject_computed", table_name="drift_runs")
    op.drop_table("drift_runs")
    op.drop_table("drift_references")
    op.drop_index("ix_drift_samples_subject_created", table_name="drift_samples")
    op.drop_table("drift_samples")
