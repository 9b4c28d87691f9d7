"""The activation wing's tables: key enrolments (a key's bound contact, every change
kept), activations (a code's HMAC, its digests, which of them were signed) and the
signer's outbox (each activation code's message and what became of it).

Rows are never deleted: an activation is evidence of a signature for as long as the
signature is shown; enrolments say who bound which contact, and when.
"""

from __future__ import annotations

from datetime import datetime

from signet.signer.schema import Base
from sqlalchemy import Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ["ActivationRow", "Base", "EnrolmentRow", "OutboxRow", "SealAuthorisationRow"]


class EnrolmentRow(Base):
    """One binding of a key to a contact; the newest row per key is in force."""

    __tablename__ = "key_enrolments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    certificate_serial: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(254))
    enrolled_by: Mapped[str] = mapped_column(String(128))
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    previous_channel: Mapped[str | None] = mapped_column(String(8))
    previous_address: Mapped[str | None] = mapped_column(String(254))


class ActivationRow(Base):
    """An activation as `signet.signer.activation.rules.Activation` keeps it."""

    __tablename__ = "activations"

    activation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    certificate_serial: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(254))
    #: JSON lists of lowercase hex SHA-256s
    document_sha256: Mapped[str] = mapped_column(Text)
    used_sha256: Mapped[str] = mapped_column(Text)
    signed_sha256: Mapped[str] = mapped_column(Text, default="[]")
    code_digest: Mapped[str] = mapped_column(String(64))
    code_purpose: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer)
    code_used: Mapped[bool] = mapped_column(Boolean)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: when the event key behind it was destroyed (NULL: not an event key, or not yet)
    spent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxRow(Base):
    """One activation code's message: sent once from memory when the activation is
    made, never retried (the person asks for a new code).  The body keeps the code
    readable only while `held` (no gateway: the admin relays it), masked otherwise."""

    __tablename__ = "signer_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    activation_id: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    to: Mapped[str] = mapped_column(String(254))
    locale: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SealAuthorisationRow(Base):
    """A standing seal-use authorisation (`signet.common.contracts.seals`): its terms,
    their SHA-256 (what the keeper's activation confirmed), and how much of it was used."""

    __tablename__ = "seal_authorisations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    certificate_serial: Mapped[str] = mapped_column(String(64), index=True)
    key_label: Mapped[str] = mapped_column(String(64))
    #: JSON list of caller names
    callers: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    max_documents: Mapped[int] = mapped_column(Integer)
    used_documents: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(200))
    terms_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    approved_activation: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
