"""The identity codes sent when a recipient opens their link (never the code itself)."""

from __future__ import annotations

from datetime import datetime

from signet.portal.schema import Base, IdColumn, new_id, utc_now
from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column


class IdentityCode(Base):
    __tablename__ = "identity_codes"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    recipient_id: Mapped[str] = mapped_column(ForeignKey("recipients.id"), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    digest: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
