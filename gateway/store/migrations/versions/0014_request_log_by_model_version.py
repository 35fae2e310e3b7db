"""request log lookups by the registry version that answered

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    versions = sa.text("model_version IS NOT NULL")
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_request_log_model_version_created",
            ["model_version", "created_at"],
            sqlite_where=versions,
            postgresql_where=versions,
        )


def downgrade() -> None:
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.drop_index("ix_request_log_model_version_created")
