"""The journal of the TSA's time status (`signet.signer.pki.tables.TimeStatusRecord`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Empty at first: tokens stamped before this revision have no recorded status.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tsa_time_status",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("process", sa.String(length=96), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("accuracy_ms", sa.Integer(), nullable=False),
        sa.Column("estimated_error_ms", sa.Float(), nullable=True),
        sa.Column("reference_offset_ms", sa.Float(), nullable=True),
        sa.Column("problem", sa.String(length=500), nullable=False),
    )
    op.create_index("ix_tsa_time_status_observed_at", "tsa_time_status", ["observed_at"])


def downgrade() -> None:
    op.drop_index("ix_tsa_time_status_observed_at", table_name="tsa_time_status")
    op.drop_table("tsa_time_status")
