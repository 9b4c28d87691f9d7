"""Signature activation: key enrolments, activations and the signer's outbox
(`signet.signer.activation.tables`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Empty at first: keys enrolled before this revision have no bound contact, and their
holders cannot activate them until an admin enrols them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_enrolments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("certificate_serial", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("enrolled_by", sa.String(length=128), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_channel", sa.String(length=8), nullable=True),
        sa.Column("previous_address", sa.String(length=254), nullable=True),
    )
    op.create_index(
        "ix_key_enrolments_certificate_serial", "key_enrolments", ["certificate_serial"]
    )
    op.create_table(
        "activations",
        sa.Column("activation_id", sa.String(length=64), primary_key=True),
        sa.Column("certificate_serial", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("document_sha256", sa.Text(), nullable=False),
        sa.Column("used_sha256", sa.Text(), nullable=False),
        sa.Column("signed_sha256", sa.Text(), nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("code_purpose", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("code_used", sa.Boolean(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("spent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_activations_certificate_serial", "activations", ["certificate_serial"])
    op.create_index("ix_activations_expires_at", "activations", ["expires_at"])
    op.create_table(
        "signer_outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("activation_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("to", sa.String(length=254), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("provider_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_signer_outbox_activation_id", "signer_outbox", ["activation_id"])
    op.create_index("ix_signer_outbox_state", "signer_outbox", ["state"])


def downgrade() -> None:
    op.drop_index("ix_signer_outbox_state", table_name="signer_outbox")
    op.drop_index("ix_signer_outbox_activation_id", table_name="signer_outbox")
    op.drop_table("signer_outbox")
    op.drop_index("ix_activations_expires_at", table_name="activations")
    op.drop_index("ix_activations_certificate_serial", table_name="activations")
    op.drop_table("activations")
    op.drop_index("ix_key_enrolments_certificate_serial", table_name="key_enrolments")
    op.drop_table("key_enrolments")
