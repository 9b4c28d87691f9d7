"""Every HSM key's recorded purpose (`signet.signer.pki.purposes`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Back-filled from what the registry already knows: each certified key takes the kind
of its first certificate, and the ledger seal's default label is recorded as the
ledger seal (an installation with another `ledger_key_label` has it recorded when
`signet up` or the operator ensures the ledger seal next).  The CA's own labels are
recorded even if no certificate names them yet, so they can never be certified as
anything else.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_KIND_TO_PURPOSE = {
    "root": "root",
    "issuing": "issuing",
    "tsa": "tsa",
    "seal": "seal",
    "person": "person",
    "event": "event",
}
_RESERVED = {
    "signet-root-ca": "root",
    "signet-issuing-ca": "issuing",
    "signet-tsa": "tsa",
    "signet-ledger-seal": "ledger_seal",
}


def upgrade() -> None:
    table = op.create_table(
        "key_purposes",
        sa.Column("label", sa.String(length=64), primary_key=True),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    connection = op.get_bind()
    first: dict[str, str] = dict(_RESERVED)
    rows = connection.execute(
        sa.text("SELECT key_label, kind FROM certificates ORDER BY created_at")
    )
    for label, kind in rows:
        first.setdefault(label, _KIND_TO_PURPOSE.get(kind, kind))
    now = datetime.now(UTC)
    if first:
        op.bulk_insert(
            table,
            [{"label": k, "purpose": v, "recorded_at": now} for k, v in sorted(first.items())],
        )


def downgrade() -> None:
    op.drop_table("key_purposes")
