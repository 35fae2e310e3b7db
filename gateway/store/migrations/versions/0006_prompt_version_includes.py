"""prompt versions: the partials and named schemas a version includes

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for the versions already stored: they predate Dotprompt's rendering and keep
    # rendering as they did (gateway/prompts/prompt.py).
    with op.batch_alter_table("prompt_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("includes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prompt_versions", schema=None) as batch_op:
        batch_op.drop_column("includes")
