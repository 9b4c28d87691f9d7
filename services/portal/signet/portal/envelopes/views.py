"""The API's answers about envelopes (what a sender or an auditor sees)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from signet.portal.envelopes.models import Envelope
from signet.portal.evidence.models import LedgerEvent


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class DocumentOut(_Out):
    index: int
    name: str
    pages: int
    size: int
    original_sha256: str
    current_sha256: str


class RecipientOut(_Out):
    id: str
    name: str
    role: str
    group: int
    status: str
    email: str | None
    mobile: str | None
    locale: str
    identity_verified: bool
    locked: bool
    finished_at: datetime | None
    decline_reason: str | None


class FieldOut(_Out):
    id: str
    document: int
    recipient_id: str
    kind: str
    page: int
    x: float
    y: float
    width: float
    height: float
    required: bool
    label: str | None
    #: what the recipient filled in (date, text, initials, checkbox), once they have
    value: str | None = None


class EnvelopeOut(_Out):
    id: str
    title: str
    message: str
    status: str
    policy: str
    policy_version: int
    deadline: datetime | None
    created_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    documents: list[DocumentOut]
    recipients: list[RecipientOut]
    fields: list[FieldOut]

    @classmethod
    def of(cls, envelope: Envelope) -> EnvelopeOut:
        position = {d.id: d.position for d in envelope.documents}
        return cls(
            id=envelope.id, title=envelope.title, message=envelope.message,
            status=envelope.status, policy=envelope.policy_name,
            policy_version=envelope.policy_version, deadline=envelope.deadline,
            created_at=envelope.created_at, sent_at=envelope.sent_at,
            finished_at=envelope.finished_at,
            documents=[
                DocumentOut(index=d.position, name=d.name, pages=d.pages, size=d.size,
                            original_sha256=d.original_sha256, current_sha256=d.current_sha256)
                for d in envelope.documents
            ],
            recipients=[
                RecipientOut(id=r.id, name=r.name, role=r.role, group=r.routing_group,
                             status=r.status, email=r.email, mobile=r.mobile, locale=r.locale,
                             identity_verified=r.identity_verified_at is not None,
                             locked=r.locked_at is not None, finished_at=r.finished_at,
                             decline_reason=r.decline_reason)
                for r in envelope.recipients
            ],
            fields=[
                FieldOut(id=f.id, document=position[f.document_id], recipient_id=f.recipient_id,
                         kind=f.kind, page=f.page, x=f.x, y=f.y, width=f.width,
                         height=f.height, required=f.required, label=f.label,
                         value=(f.value or {}).get("value"))
                for f in envelope.fields
            ],
        )  # fmt: skip


class EnvelopePage(_Out):
    items: list[EnvelopeOut]
    #: pass as ``cursor`` for the next page; None: this was the last
    next_cursor: str | None


class EventOut(_Out):
    id: str
    type: str
    time: datetime
    actor: str
    ip: str | None
    user_agent: str | None
    auth_method: str | None
    document_hashes: list[str]
    details: dict[str, str]
    #: its place in storage's ledger (None: not appended yet, storage was unreachable)
    ledger_index: int | None
    leaf_hash: str | None

    @classmethod
    def of(cls, row: LedgerEvent) -> EventOut:
        return cls(
            id=row.id, type=row.event_type, time=row.created_at, actor=row.actor, ip=row.ip,
            user_agent=row.user_agent, auth_method=row.auth_method,
            document_hashes=row.document_hashes, details=row.details,
            ledger_index=row.ledger_index, leaf_hash=row.leaf_hash,
        )  # fmt: skip
