"""The recipient's signing step: their event certificate and their pending activation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 11:55:00

Why: the portal asks the signer for an event certificate once per recipient and step,
and for an activation bound to the exact revisions to be signed; both are kept on the
recipient so a retried request reuses them instead of issuing a second.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("certificate_serial", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("activation_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("activation_sha256", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("activation_requested_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("activation_requested_at")
        batch.drop_column("activation_sha256")
        batch.drop_column("activation_id")
        batch.drop_column("certificate_serial")
