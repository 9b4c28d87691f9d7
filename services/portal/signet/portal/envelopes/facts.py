"""What a certificate of completion states, read from the portal's records.

Every value comes from a row a step wrote as it happened (the envelope, its documents
and recipients, and the `LedgerEvent` rows that storage's ledger holds too), plus
the signer's own record of each activation: the intent check is the signer's
evidence, not the portal's say-so.  Nothing here is computed from what a request
claims at completion time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from signet.common.contracts.signer import ActivationRecord
from signet.portal.accounts.models import Organisation, User
from signet.portal.envelopes.models import Envelope, FieldKind
from signet.portal.evidence.models import LedgerEvent
from sqlalchemy import select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class DocumentFacts:
    position: int
    name: str
    pages: int
    original_sha256: str
    final_sha256: str


@dataclass(frozen=True)
class Check:
    """One identity or intent check: how, to where (masked), when, from where."""

    method: str
    to: str | None
    at: datetime | None
    ip: str | None = None


@dataclass(frozen=True)
class PartyFacts:
    position: int
    name: str
    role: str
    group: int
    status: str
    contact: str
    identity: Check | None
    intent: Check | None
    finished_at: datetime | None
    ip: str | None
    user_agent: str | None
    certificate_serial: str | None
    replaces: str | None = None


@dataclass(frozen=True)
class TimelineEntry:
    sequence: int
    at: datetime
    event_type: str
    actor: str
    ip: str | None
    ledger_index: int | None


@dataclass(frozen=True)
class CompletionFacts:
    envelope_id: str
    title: str
    organisation: str
    sender: str
    policy: str
    created_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    documents: list[DocumentFacts]
    parties: list[PartyFacts]
    timeline: list[TimelineEntry]
    attachments: list[tuple[str, str]] = field(default_factory=list)
    #: storage's signed tree head when the certificate was made: size, root, time
    ledger_head: tuple[int, str, datetime] | None = None


def masked(address: str | None) -> str:
    """An e-mail or mobile as the certificate shows it: enough to recognise, not to use."""
    if not address:
        return "-"
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    digits = re.sub(r"\D", "", address)
    return f"{address[:3]}****{digits[-4:]}" if len(digits) > 7 else "****"


def _last(events: list[LedgerEvent], event_type: str, actor: str) -> LedgerEvent | None:
    found = [e for e in events if e.event_type == event_type and e.actor == actor]
    return found[-1] if found else None


def gather(
    session: Session,
    envelope_id: str,
    activation: Callable[[str], ActivationRecord | None],
) -> CompletionFacts:
    """The facts of one envelope; `activation` reads the signer's record of an id."""
    envelope = session.get(Envelope, envelope_id)
    if envelope is None:
        raise LookupError(envelope_id)
    events = list(
        session.scalars(
            select(LedgerEvent)
            .where(LedgerEvent.envelope_id == envelope_id)
            .order_by(LedgerEvent.sequence)
        )
    )
    organisation = session.get(Organisation, envelope.organisation_id)
    sender = session.get(User, envelope.sender_id)
    names = {r.id: r.name for r in envelope.recipients}
    parties = []
    for recipient in envelope.recipients:
        actor = f"recipient:{recipient.id}"
        passed = _last(events, "identity.passed", actor)
        identity = (
            Check(recipient.identity_method or "-", masked(recipient.mobile or recipient.email),
                  recipient.identity_verified_at, passed.ip if passed else None)
            if recipient.identity_verified_at is not None else None
        )  # fmt: skip
        signed = _last(events, "document.signed", actor)
        intent = None
        if signed is not None and signed.details.get("activation"):
            record = activation(signed.details["activation"])
            if record is not None:
                intent = Check(record.method, record.to, record.verified_at, signed.ip)
        acted = signed or _last(events, "recipient.approved", actor)
        parties.append(
            PartyFacts(
                position=recipient.position, name=recipient.name, role=recipient.role,
                group=recipient.routing_group, status=recipient.status,
                contact=masked(recipient.email or recipient.mobile), identity=identity,
                intent=intent, finished_at=recipient.finished_at,
                ip=acted.ip if acted else None,
                user_agent=acted.user_agent if acted else None,
                certificate_serial=signed.details.get("certificate") if signed else None,
                replaces=names.get(recipient.replaces_id) if recipient.replaces_id else None,
            )
        )  # fmt: skip
    return CompletionFacts(
        envelope_id=envelope.id,
        title=envelope.title,
        organisation=organisation.name if organisation else "-",
        sender=f"{sender.name} <{sender.email}>" if sender else "-",
        policy=f"{envelope.policy_name} v{envelope.policy_version}",
        created_at=envelope.created_at,
        sent_at=envelope.sent_at,
        finished_at=envelope.finished_at,
        documents=[
            DocumentFacts(d.position, d.name, d.pages, d.original_sha256, d.current_sha256)
            for d in envelope.documents
        ],
        parties=parties,
        timeline=[
            TimelineEntry(e.sequence, e.created_at, e.event_type, e.actor, e.ip, e.ledger_index)
            for e in events
        ],
        attachments=[
            (f"{names.get(f.recipient_id, '-')}: {f.value['name']}", f.value["sha256"])
            for f in envelope.fields
            if f.kind == FieldKind.ATTACHMENT.value and f.value and f.value.get("sha256")
        ],
    )
