"""Standing seal-use authorisations (`signet.signer.activation.tables.SealAuthorisationRow`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

Empty at first: a seal whose keeper is not enrolled signs as before, on the caller's
token; once a keeper is enrolled, every use needs their approval or one of these.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seal_authorisations",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("certificate_serial", sa.String(length=64), nullable=False),
        sa.Column("key_label", sa.String(length=64), nullable=False),
        sa.Column("callers", sa.Text(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_documents", sa.Integer(), nullable=False),
        sa.Column("used_documents", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=False),
        sa.Column("terms_sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_activation", sa.String(length=64), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=64), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_seal_authorisations_certificate_serial", "seal_authorisations", ["certificate_serial"]
    )


def downgrade() -> None:
    op.drop_index("ix_seal_authorisations_certificate_serial", "seal_authorisations")
    op.drop_table("seal_authorisations")
