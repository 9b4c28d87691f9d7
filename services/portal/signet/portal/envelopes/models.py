"""Envelopes, their documents, recipients and fields.

The routing state (`status` of envelope and recipients) is what
`signet.portal.envelopes.routing` computes; the service layer is the only writer and
changes it in the same transaction as the jobs it causes.  Documents are referenced
by SHA-256 in the vault; the portal keeps no document bytes of its own.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from signet.portal.schema import Base, IdColumn, new_id, utc_now
from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship


class FieldKind(StrEnum):
    SIGNATURE = "signature"
    SEAL = "seal"
    CROSS_PAGE_SEAL = "cross_page_seal"
    INITIALS = "initials"
    DATE = "date"
    TEXT = "text"
    CHECKBOX = "checkbox"
    ATTACHMENT = "attachment"


class Envelope(Base):
    __tablename__ = "envelopes"
    __table_args__ = (UniqueConstraint("organisation_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    sender_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), index=True)
    policy_name: Mapped[str] = mapped_column(String(63))
    policy_version: Mapped[int] = mapped_column(Integer)
    #: SHA-256 of the policy file in force when the envelope was sent (evidence)
    policy_sha256: Mapped[str] = mapped_column(String(64))
    deadline: Mapped[datetime | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    sent_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: bumped by every state change: a concurrent change fails instead of being lost
    version: Mapped[int] = mapped_column(Integer, default=1)

    documents: Mapped[list[Document]] = relationship(
        order_by="Document.position", cascade="all, delete-orphan"
    )
    recipients: Mapped[list[Recipient]] = relationship(
        order_by="Recipient.position", cascade="all, delete-orphan"
    )
    fields: Mapped[list[EnvelopeField]] = relationship(cascade="all, delete-orphan")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's hook


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    envelope_id: Mapped[str] = mapped_column(ForeignKey("envelopes.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    pages: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    #: the original, as uploaded
    original_sha256: Mapped[str] = mapped_column(String(64))
    #: the newest revision (after each signature); equals the original before the first
    current_sha256: Mapped[str] = mapped_column(String(64))


class Recipient(Base):
    __tablename__ = "recipients"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    envelope_id: Mapped[str] = mapped_column(ForeignKey("envelopes.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    routing_group: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    mobile: Mapped[str | None] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(16), default="en")
    #: an employee of the organisation (signs with their enrolled key), or None
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    #: who handed their turn to this recipient (delegation or forward), if anyone
    replaces_id: Mapped[str | None] = mapped_column(ForeignKey("recipients.id"))
    #: SHA-256 of the current link token; a new link replaces it
    link_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    link_generation: Mapped[int] = mapped_column(Integer, default=0)
    link_expires_at: Mapped[datetime | None]
    identity_verified_at: Mapped[datetime | None]
    identity_method: Mapped[str | None] = mapped_column(String(32))
    locked_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    decline_reason: Mapped[str | None] = mapped_column(Text)
    #: the event certificate the signer issued for this recipient's signing step
    certificate_serial: Mapped[str | None] = mapped_column(String(64))
    #: the activation pending for this step and the SHA-256 of the revisions it allows
    activation_id: Mapped[str | None] = mapped_column(String(64))
    activation_sha256: Mapped[list[str] | None] = mapped_column(JSON)
    activation_requested_at: Mapped[datetime | None]


class EnvelopeField(Base):
    """A place on a page that one recipient fills: coordinates in PDF points from the
    page's lower left corner, as pyHanko and the PDF specification count them."""

    __tablename__ = "fields"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    envelope_id: Mapped[str] = mapped_column(ForeignKey("envelopes.id"), index=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id"))
    recipient_id: Mapped[str] = mapped_column(ForeignKey("recipients.id"))
    kind: Mapped[str] = mapped_column(String(24))
    page: Mapped[int] = mapped_column(Integer)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    width: Mapped[float] = mapped_column(Float)
    height: Mapped[float] = mapped_column(Float)
    required: Mapped[bool] = mapped_column(default=True)
    label: Mapped[str | None] = mapped_column(String(200))
    value: Mapped[dict[str, str] | None] = mapped_column(JSON)
