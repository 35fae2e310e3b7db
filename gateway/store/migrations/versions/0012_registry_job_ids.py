"""registry: the provider's fine-tuning job a version was imported from (one version per job)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Unique: importing a job twice, even from two replicas at once, registers it once. Versions
    # registered by hand have none (NULLs never collide).
    with op.batch_alter_table("registry_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("job_id", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_registry_versions_job_id", ["job_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("registry_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_registry_versions_job_id")
        batch_op.drop_column("job_id")
