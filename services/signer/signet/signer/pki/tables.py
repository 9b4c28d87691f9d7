"""The PKI wing's table: every HSM key's recorded purpose (`signet.signer.pki.purposes`)."""

from __future__ import annotations

from datetime import datetime

from signet.signer.schema import Base
from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column


class KeyPurposeRecord(Base):
    __tablename__ = "key_purposes"

    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
