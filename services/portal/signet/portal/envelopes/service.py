"""Envelope transactions: each state change is one transaction with the messages it causes.

The routing decisions are `signet.portal.envelopes.routing`'s; this module loads an
envelope, asks routing, writes the answer back and records the effects (outbox
messages) in the same transaction, so nothing is sent for a change that did not
happen and nothing is lost across a crash.  Every query is filtered by organisation:
an id from another organisation is simply not found.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from signet.common.errors import Conflict, Forbidden, NotFound, SignetError
from signet.common.notify import Notice
from signet.common.policies import LoadedPolicy
from signet.portal.accounts.models import User
from signet.portal.envelopes import routing
from signet.portal.envelopes.addressing import addressee
from signet.portal.envelopes.contracts import EnvelopeCreate
from signet.portal.envelopes.models import Document, Envelope, EnvelopeField, Recipient
from signet.portal.links import link_token, link_token_hash
from signet.portal.notifications.outbox import enqueue
from signet.portal.schema import utc_now
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

#: The notices a routing effect becomes.
_NOTICES = {
    routing.NoticeReason.YOUR_TURN: Notice.YOUR_TURN,
    routing.NoticeReason.COPY: Notice.COPY,
    routing.NoticeReason.COMPLETED: Notice.COMPLETED,
    routing.NoticeReason.DECLINED: Notice.DECLINED,
    routing.NoticeReason.VOIDED: Notice.VOIDED,
    routing.NoticeReason.EXPIRED: Notice.EXPIRED,
}
#: Notices that carry the recipient's link.
_WITH_LINK = {Notice.YOUR_TURN, Notice.COPY, Notice.COMPLETED}


class RoutingRefused(SignetError):
    """An action the envelope's state does not allow (`routing.Refused`), as HTTP 409."""

    status_code = 409

    def __init__(self, refused: routing.Refused) -> None:
        super().__init__(refused.detail)
        self.code = refused.code


class LinkInvalid(SignetError):
    status_code = 404
    code = "link_invalid"


@dataclass(frozen=True)
class StoredDocument:
    """A document already in the vault (storage), by its SHA-256."""

    name: str
    sha256: str
    size: int
    pages: int


@dataclass(frozen=True)
class PortalKeys:
    """Server-side keys the database never holds (from Secrets in a cluster)."""

    link_key: bytes
    code_key: bytes


@dataclass(frozen=True)
class LinkView:
    """What opening a link shows: whose turn it is, without acting."""

    envelope_id: str
    recipient_id: str
    title: str
    envelope_status: str
    recipient_status: str
    #: None when the recipient may act now, else the reason (`not_your_turn`, ...)
    blocked: str | None
    identity_verified: bool


class EnvelopeService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        policy: Callable[[str | None], LoadedPolicy],
        keys: PortalKeys,
        *,
        portal_url: str,
        held: bool,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.sessions, self.policy, self.keys = sessions, policy, keys
        self.portal_url, self.held, self.clock = portal_url.rstrip("/"), held, clock

    # -- the sender's side ----------------------------------------------------------------

    def create(
        self,
        organisation_id: str,
        sender_id: str,
        request: EnvelopeCreate,
        documents: Sequence[StoredDocument],
        *,
        idempotency_key: str | None = None,
    ) -> str:
        """A draft envelope; the same idempotency key returns the first envelope's id."""
        if not documents:
            raise Conflict("an envelope needs at least one document")
        for field in request.fields:
            if field.document >= len(documents):
                raise Conflict(f"field names document {field.document}, which does not exist")
            if field.page > documents[field.document].pages:
                pages = documents[field.document].pages
                raise Conflict(f"field on page {field.page} of a {pages}-page document")
        policy = self.policy(request.policy)
        if len(request.recipients) > policy.spec.max_signers:
            raise Conflict(
                f"policy {policy.name} allows at most {policy.spec.max_signers} recipients"
            )
        with self.sessions.begin() as session:
            if idempotency_key is not None:
                existing = session.scalar(
                    select(Envelope.id).where(
                        Envelope.organisation_id == organisation_id,
                        Envelope.idempotency_key == idempotency_key,
                    )
                )
                if existing is not None:
                    return existing
            envelope = Envelope(
                organisation_id=organisation_id,
                sender_id=sender_id,
                title=request.title,
                message=request.message,
                status=routing.EnvelopeStatus.DRAFT.value,
                policy_name=policy.name,
                policy_version=policy.version,
                policy_sha256=policy.sha256,
                deadline=request.deadline,
                idempotency_key=idempotency_key,
                created_at=self.clock(),
            )
            envelope.documents = [
                Document(position=i, name=d.name, pages=d.pages, size=d.size,
                         original_sha256=d.sha256, current_sha256=d.sha256)
                for i, d in enumerate(documents)
            ]  # fmt: skip
            envelope.recipients = [
                Recipient(position=i, role=r.role.value, routing_group=r.group,
                          status=routing.RecipientStatus.WAITING.value, name=r.name,
                          email=r.email, mobile=r.mobile, locale=r.locale)
                for i, r in enumerate(request.recipients)
            ]  # fmt: skip
            session.add(envelope)
            session.flush()
            envelope.fields = [
                EnvelopeField(
                    document_id=envelope.documents[f.document].id,
                    recipient_id=envelope.recipients[f.recipient].id,
                    kind=f.kind.value, page=f.page, x=f.x, y=f.y,
                    width=f.width, height=f.height, required=f.required, label=f.label,
                )
                for f in request.fields
            ]  # fmt: skip
            return envelope.id

    def send(self, organisation_id: str, envelope_id: str) -> None:
        self._act(organisation_id, envelope_id, routing.Send())

    def void(self, organisation_id: str, envelope_id: str) -> None:
        self._act(organisation_id, envelope_id, routing.Void())

    # -- the recipient's side -------------------------------------------------------------

    def open(self, token: str) -> LinkView:
        """What the link shows; a link opened out of turn says so and enables nothing."""
        with self.sessions() as session:
            recipient, envelope = self._by_link(session, token)
            state = _state(envelope)
            try:
                routing.may_act(state, recipient.id)
                blocked = None
            except routing.Refused as refused:
                blocked = refused.code
            return LinkView(
                envelope.id, recipient.id, envelope.title, envelope.status,
                recipient.status, blocked, recipient.identity_verified_at is not None,
            )  # fmt: skip

    def decline(self, token: str, reason: str) -> None:
        with self.sessions.begin() as session:
            recipient, envelope = self._by_link(session, token)
            self._require_identity(recipient)
            recipient.decline_reason = reason
            self._apply(session, envelope, routing.Decline(recipient.id), reason=reason,
                        actor=recipient.name)  # fmt: skip

    # -- internals ------------------------------------------------------------------------

    def _act(self, organisation_id: str, envelope_id: str, action: routing.Action) -> None:
        with self.sessions.begin() as session:
            envelope = session.scalar(
                select(Envelope).where(
                    Envelope.id == envelope_id, Envelope.organisation_id == organisation_id
                )
            )
            if envelope is None:
                raise NotFound(f"no envelope {envelope_id}")
            self._apply(session, envelope, action)

    def _apply(
        self, session: Session, envelope: Envelope, action: routing.Action, **values: str
    ) -> None:
        try:
            outcome = routing.apply(_state(envelope), action)
        except routing.Refused as refused:
            raise RoutingRefused(refused) from None
        now = self.clock()
        if isinstance(action, routing.Send):
            envelope.sent_at = now
        if outcome.envelope.status in routing.TERMINAL:
            envelope.finished_at = now
        envelope.status = outcome.envelope.status.value
        by_id = {r.id: r for r in envelope.recipients}
        for member in outcome.envelope.recipients:
            row = by_id[member.id]
            if row.status != member.status.value:
                row.status = member.status.value
                if member.status in routing.FINISHED | {routing.RecipientStatus.DECLINED}:
                    row.finished_at = now
        policy = self.policy(envelope.policy_name)
        for effect in outcome.effects:
            if isinstance(effect, routing.Notify):
                for recipient_id in effect.recipient_ids:
                    self._notify(session, envelope, by_id[recipient_id], _NOTICES[effect.reason],
                                 policy, **values)  # fmt: skip
            else:
                # routing.Complete follows only a signature or an approval, which this
                # service cannot record yet (signing arrives with signature activation)
                raise AssertionError(f"unexpected effect {effect!r}")

    def _notify(
        self, session: Session, envelope: Envelope, recipient: Recipient, notice: Notice,
        policy: LoadedPolicy, **values: str,
    ) -> None:  # fmt: skip
        secret = None
        if notice in _WITH_LINK:
            if recipient.link_hash is None:
                recipient.link_generation += 1
            token = link_token(self.keys.link_key, recipient.id, recipient.link_generation)
            recipient.link_hash = link_token_hash(token)
            recipient.link_expires_at = self.clock() + timedelta(
                days=policy.spec.link_validity_days
            )
            values["link"] = f"{self.portal_url}/s/{token}"
            secret = token
        enqueue(
            session, addressee(recipient), notice, held=self.held,
            organisation_id=envelope.organisation_id, secret=secret,
            title=envelope.title, message=envelope.message, sender=self._sender(session, envelope),
            **values,
        )  # fmt: skip

    @staticmethod
    def _sender(session: Session, envelope: Envelope) -> str:
        sender = session.get(User, envelope.sender_id)
        return sender.name if sender is not None else ""

    def by_link(self, session: Session, token: str) -> tuple[Recipient, Envelope]:
        """The recipient a link belongs to and their envelope; `LinkInvalid` otherwise."""
        return self._by_link(session, token)

    def _by_link(self, session: Session, token: str) -> tuple[Recipient, Envelope]:
        recipient = session.scalar(
            select(Recipient).where(Recipient.link_hash == link_token_hash(token))
        )
        if recipient is None:
            raise LinkInvalid(
                "this link is not valid (mistyped, replaced by a newer one, or revoked)"
            )
        expires = recipient.link_expires_at
        if expires is not None and self.clock() >= expires:
            raise LinkInvalid("this link has expired; ask the sender for a new one")
        envelope = session.get(Envelope, recipient.envelope_id)
        assert envelope is not None
        return recipient, envelope

    @staticmethod
    def _require_identity(recipient: Recipient) -> None:
        if recipient.locked_at is not None:
            raise Forbidden("this link is locked after too many wrong codes")
        if recipient.identity_verified_at is None:
            raise Forbidden("confirm your identity with the code first")


def _state(envelope: Envelope) -> routing.Envelope:
    return routing.Envelope(
        routing.EnvelopeStatus(envelope.status),
        tuple(
            routing.Recipient(
                r.id,
                routing.RecipientRole(r.role),
                r.routing_group,
                routing.RecipientStatus(r.status),
            )
            for r in envelope.recipients
        ),
    )
