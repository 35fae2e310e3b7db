"""request log: streams recovered mid-answer, and the deployment they broke on

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The rows already stored were never recovered: false, not null.
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("recovered", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("recovered_from", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.drop_column("recovered_from")
        batch_op.drop_column("recovered")
