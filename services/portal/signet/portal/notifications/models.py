"""The outbox: one row per message, with the state a server reported.

The body is what `signet.common.notify.Message.stored_body` allows: a one-time code
or a link token is kept readable only while the message is `held` (no gateway
configured).  With a gateway the dispatcher (`signet.portal.notifications.dispatch`)
derives a link again when it sends, and a code is sent once, right after the commit
that made it, from memory.
"""

from __future__ import annotations

from datetime import datetime

from signet.portal.schema import Base, IdColumn, new_id, utc_now
from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    organisation_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"))
    envelope_id: Mapped[str | None] = mapped_column(ForeignKey("envelopes.id"), index=True)
    recipient_id: Mapped[str | None] = mapped_column(ForeignKey("recipients.id"))
    notice: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(8))
    to: Mapped[str] = mapped_column(String(254))
    locale: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    provider_id: Mapped[str | None] = mapped_column(String(200), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: a queued message is due from then (retries back off); None for a one-time code,
    #: which is sent once from memory and never by the periodic dispatcher
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    #: when a dispatcher took it (state `sending`); a crash leaves it to be taken again
    claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)
