"""classic models: per-feature expectations of registry versions, and the values of each call
that broke them in the request log

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expectations", sa.JSON(), nullable=True))
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("feature_violations", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.drop_column("feature_violations")
    with op.batch_alter_table("registry_versions", schema=None) as batch_op:
        batch_op.drop_column("expectations")
