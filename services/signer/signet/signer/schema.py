"""The signer's schema: the declarative base every wing's tables are declared on, and
the registry's own tables (issued certificates, monotonic counters).

Below everything that uses the database: the wings declare their tables on `Base` in
their own table modules (``signet.signer.batch.tables``), and
`signet.signer.migrations.TABLE_MODULES` lists every such module, so the models the
revisions are compared against are all of them.  Certificates are never deleted: a
revoked or expired certificate must still be answerable by OCSP/CRL and shown by
validation years later.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "CertificateRecord", "Counter", "aware"]


class Base(DeclarativeBase):
    """Every table of the signer database (certificates, counters, batches)."""


class CertificateRecord(Base):
    __tablename__ = "certificates"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    subject: Mapped[str] = mapped_column(Text)
    issuer_serial: Mapped[str | None] = mapped_column(String(64))
    key_label: Mapped[str] = mapped_column(String(64), index=True)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    key_destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    identity_verification: Mapped[str | None] = mapped_column(Text)


class Counter(Base):
    """Named monotonic counters (TSA serial blocks, CRL numbers)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column()


def aware(value: datetime | None) -> datetime | None:
    """`value` as UTC (SQLite drops the zone; everything stored is UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
