"""Batch items know where their signed document is in a results pack.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A worker now appends the signed documents of a claim to one file per batch
(``out/<pack>.pack``) and makes them durable with one fsync; each item records
the pack, the offset and the size of its document there, in the transaction that
marks it done.  Nullable: items signed before packs keep NULL and are read from
their own file (``out/NNNNNN.pdf``), and an older signer still running during a
rollout ignores the columns.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PACK_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("output_pack", sa.String(length=64)),
    ("output_offset", sa.BigInteger()),
    ("output_size", sa.BigInteger()),
)


def upgrade() -> None:
    with op.batch_alter_table("batch_items") as batch:
        for name, type_ in PACK_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_items") as batch:
        for name, _ in reversed(PACK_COLUMNS):
            batch.drop_column(name)
