"""request log lookups: by model, by prompt, errors

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    prompts = sa.text("prompt_name IS NOT NULL")
    errors = sa.text("status >= 400")
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.create_index("ix_request_log_alias_created", ["alias", "created_at"])
        batch_op.create_index(
            "ix_request_log_prompt_created",
            ["prompt_name", "created_at"],
            sqlite_where=prompts,
            postgresql_where=prompts,
        )
        batch_op.create_index(
            "ix_request_log_errors_created",
            ["created_at"],
            sqlite_where=errors,
            postgresql_where=errors,
        )


def downgrade() -> None:
    with op.batch_alter_table("request_log", schema=None) as batch_op:
        batch_op.drop_index("ix_request_log_errors_created")
        batch_op.drop_index("ix_request_log_prompt_created")
        batch_op.drop_index("ix_request_log_alias_created")
