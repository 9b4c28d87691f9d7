"""The signer's schema as ``create_all`` made it before migrations: the registry
(certificates, counters) and batch sealing (batches, batch items) without the spool
columns.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Constraints are left unnamed, as ``create_all`` left them, so that a database it
made and one made by this revision are the same (PostgreSQL names them alike).
`TABLES` lets `signet.signer.migrations` create, in an adopted database, a table
that its older code had not made yet.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def create_certificates() -> None:
    op.create_table(
        "certificates",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("issuer_serial", sa.String(length=64), nullable=True),
        sa.Column("key_label", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(length=32), nullable=True),
        sa.Column("key_destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("identity_verification", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("serial"),
    )
    op.create_index("ix_certificates_key_label", "certificates", ["key_label"])
    op.create_index("ix_certificates_kind", "certificates", ["kind"])


def create_counters() -> None:
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def create_batches() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("options_json", sa.Text(), nullable=False),
        sa.Column("has_image", sa.Boolean(), nullable=False),
        sa.Column("certificate_serial", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )


def create_batch_items() -> None:
    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("input_sha256", sa.String(length=64), nullable=False),
        sa.Column("output_sha256", sa.String(length=64), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"]),
        sa.PrimaryKeyConstraint("batch_id", "idx"),
    )
    op.create_index("ix_batch_items_state", "batch_items", ["state"])


#: Each table of this revision and what creates it, in an order foreign keys allow.
TABLES: dict[str, Callable[[], None]] = {
    "certificates": create_certificates,
    "counters": create_counters,
    "batches": create_batches,
    "batch_items": create_batch_items,
}


def upgrade() -> None:
    for create in TABLES.values():
        create()


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
