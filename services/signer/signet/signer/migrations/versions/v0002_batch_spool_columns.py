"""Batch items know where their document is in the batch's upload spool.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Uploads became one spool file per batch (``in/uploads.spool``); each item records
its offset and size there.  Nullable: items of batches staged before the spool keep
NULL and are read from their own file (``in/NNNNNN.pdf``), and an older signer
still running during a rollout ignores the columns.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: In the order they are added; a database adopted half-way (the ad-hoc step this
#: revision replaces added them one transaction each) gets the missing one only.
SPOOL_COLUMNS = ("input_offset", "input_size")


def add_spool_column(name: str) -> None:
    with op.batch_alter_table("batch_items") as batch:
        batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))


def upgrade() -> None:
    for name in SPOOL_COLUMNS:
        add_spool_column(name)


def downgrade() -> None:
    with op.batch_alter_table("batch_items") as batch:
        for name in reversed(SPOOL_COLUMNS):
            batch.drop_column(name)
