"""Every HSM key's purpose, recorded when the key is made (`KeyPurpose`).

The HSM knows labels, not intentions: any caller who could name the issuing CA's
label used to get it certified as a seal and then sign anything with it.  The purpose
is written here *before* the key is generated, so no key of Signet's ever exists
without one, and the CA and the digest route ask this table, never the label.  A row
is never changed: a label that once was a CA key stays one, even after the key is
destroyed.  Keys made outside Signet (an admin's HSM tool) have no row; they take
the purpose of their first certification, unless the label is taken.
"""

from __future__ import annotations

from datetime import UTC, datetime

from signet.common.contracts.signer import KeyPurpose
from signet.common.errors import Forbidden
from signet.signer.pki.tables import KeyPurposeRecord
from signet.signer.registry import Registry
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


class KeyPurposeMismatch(Forbidden):
    code = "key_purpose"


class KeyPurposes:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def of(self, label: str) -> KeyPurpose | None:
        with self.registry.session() as session:
            value = session.scalar(
                select(KeyPurposeRecord.purpose).where(KeyPurposeRecord.label == label)
            )
        return KeyPurpose(value) if value is not None else None

    def claim(self, label: str, purpose: KeyPurpose) -> None:
        """Record `purpose` for `label` unless it has one; raise if it has another.

        Insert-or-ignore, then read back: two processes claiming one label at once
        agree on whichever committed first."""
        with self.registry.session() as session, session.begin():
            dialect = session.get_bind().dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            session.execute(
                insert(KeyPurposeRecord)
                .values(label=label, purpose=purpose.value, recorded_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=["label"])
            )
        self.require(label, purpose)

    def require(self, label: str, *allowed: KeyPurpose) -> KeyPurpose:
        recorded = self.of(label)
        if recorded is None or recorded not in allowed:
            wanted = " or ".join(p.value for p in allowed)
            held = recorded.value if recorded else "no recorded purpose"
            raise KeyPurposeMismatch(
                f"HSM key {label!r} is a {held} key and cannot be used as {wanted}"
            )
        return recorded
