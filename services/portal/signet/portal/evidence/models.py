"""Ledger events waiting for (or already given) their place in storage's ledger."""

from __future__ import annotations

from datetime import datetime

from signet.portal.schema import Base, IdColumn, new_id, utc_now
from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column


class LedgerEvent(Base):
    """One step of an envelope, written with the step; appended to the ledger after.

    The id is the event's id in the ledger too, so an append retried after a lost
    answer finds the leaf it already made instead of making a second."""

    __tablename__ = "ledger_events"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    #: the order steps happened in (a database sequence would differ per dialect)
    sequence: Mapped[int] = mapped_column(Integer, index=True)
    envelope_id: Mapped[str] = mapped_column(ForeignKey("envelopes.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(254))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    auth_method: Mapped[str | None] = mapped_column(String(64))
    document_hashes: Mapped[list[str]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    #: where the ledger put it (None: not appended yet)
    ledger_index: Mapped[int | None] = mapped_column(Integer, index=True)
    leaf_hash: Mapped[str | None] = mapped_column(String(64))
    appended_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
