"""The outbox delivers: each message's next attempt and the dispatcher's claim.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 11:05:00

Why: with a mail server or SMS gateway configured, messages are handed to it by the
portal's dispatcher with retries, and their real state recorded.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as table:
        table.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        table.create_index("ix_outbox_next_attempt_at", ["next_attempt_at"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as table:
        table.drop_index("ix_outbox_next_attempt_at")
        for column in ("claimed_at", "next_attempt_at"):
            table.drop_column(column)
