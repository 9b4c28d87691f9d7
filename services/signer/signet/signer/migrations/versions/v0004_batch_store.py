"""The batch store's id: which directory (volume) the batch rows were written to.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

One row (`signet.signer.batch.guard.BatchStoreRecord`), written the first time a
signer opens its batch directory and finds its marker file.  A signer that later
finds the database's batches but a directory without that marker (an emptyDir
after a restart, a volume not mounted) refuses batches instead of reporting
documents it no longer has.  A new table only: an older signer running during a
rollout never reads it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_store",
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("store_id", sa.String(length=64), nullable=False),
        sa.Column("directory", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("batch_store")
