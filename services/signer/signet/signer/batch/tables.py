"""The batch wing's tables: batches, their items (the work queue), and the batch store's
record (which directory the batch rows belong to).

Declared on the signer's one `Base` (`signet.signer.schema`) in this module of their own,
which imports nothing of the wing, so that the migrations can import it
(`signet.signer.migrations.TABLE_MODULES`) without importing the queue, the store or
the guard that work on the tables.
"""

from __future__ import annotations

from datetime import datetime

from signet.signer.schema import Base
from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ["BatchItemRecord", "BatchRecord", "BatchStoreRecord"]


class BatchRecord(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    options_json: Mapped[str] = mapped_column(Text)
    has_image: Mapped[bool] = mapped_column(Boolean)
    certificate_serial: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(8))
    total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BatchItemRecord(Base):
    __tablename__ = "batch_items"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(8), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    input_sha256: Mapped[str] = mapped_column(String(64))
    output_sha256: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Where the document is in ``in/uploads.spool``; NULL for batches staged before the
    #: spool existed (one file per document, ``in/NNNNNN.pdf``).
    input_offset: Mapped[int | None] = mapped_column(BigInteger)
    input_size: Mapped[int | None] = mapped_column(BigInteger)
    #: Where the signed document is: a pack in ``out/`` and the slice of it; NULL for
    #: items signed before packs existed (one file per document, ``out/NNNNNN.pdf``).
    output_pack: Mapped[str | None] = mapped_column(String(64))
    output_offset: Mapped[int | None] = mapped_column(BigInteger)
    output_size: Mapped[int | None] = mapped_column(BigInteger)


class BatchStoreRecord(Base):
    """The store id the batch rows belong to, recorded when the directory was first used."""

    __tablename__ = "batch_store"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(64))
    #: where the directory was mounted then (for the admin reading a mismatch)
    directory: Mapped[str] = mapped_column(Text)
    #: batches created before this are not expected in the directory (adopted without them)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
