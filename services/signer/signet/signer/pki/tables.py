"""The PKI wing's tables: every HSM key's recorded purpose (`signet.signer.pki.purposes`),
and the journal of the TSA's time status (`signet.signer.pki.timesource.TimeJournal`)."""

from __future__ import annotations

from datetime import datetime

from signet.signer.schema import Base
from sqlalchemy import DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column


class KeyPurposeRecord(Base):
    __tablename__ = "key_purposes"

    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TimeStatusRecord(Base):
    """One verdict of the TSA's time check: written when it changes, and at least once a
    minute while stamps are asked for, so the status any token was stamped under is the
    newest row of its process at or before the token's genTime."""

    __tablename__ = "tsa_time_status"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    #: host name and process id of the signer that judged it
    process: Mapped[str] = mapped_column(String(96))
    state: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    accuracy_ms: Mapped[int] = mapped_column(Integer)
    estimated_error_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    reference_offset_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    problem: Mapped[str] = mapped_column(String(500), default="")
