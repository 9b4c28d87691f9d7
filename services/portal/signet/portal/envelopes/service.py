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
from signet.portal.envelopes.contracts import EnvelopeCreate, SuccessorIn
from signet.portal.envelopes.models import Document, Envelope, EnvelopeField, FieldKind, Recipient
from signet.portal.evidence.record import NOWHERE, Origin, record_event
from signet.portal.links import link_token, link_token_hash
from signet.portal.notifications.outbox import enqueue
from signet.portal.schema import new_id, utc_now
from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

#: The notices a routing effect becomes.
_NOTICES = {
    routing.NoticeReason.YOUR_TURN: Notice.YOUR_TURN,
    routing.NoticeReason.COPY: Notice.COPY,
    routing.NoticeReason.COMPLETED: Notice.COMPLETED,
    routing.NoticeReason.DECLINED: Notice.DECLINED,
    routing.NoticeReason.VOIDED: Notice.VOIDED,
    routing.NoticeReason.EXPIRED: Notice.EXPIRED,
}
#: The ledger event each action is recorded as.
_EVENT_TYPES: dict[type[object], str] = {
    routing.Send: "envelope.sent",
    routing.Sign: "recipient.signed",
    routing.Approve: "recipient.approved",
    routing.Decline: "recipient.declined",
    routing.Delegate: "recipient.delegated",
    routing.Forward: "recipient.forwarded",
    routing.Void: "envelope.voided",
    routing.Expire: "envelope.expired",
}
#: Relationships an API answer shows, loaded with the envelope.
_WHOLE = (
    selectinload(Envelope.documents),
    selectinload(Envelope.recipients),
    selectinload(Envelope.fields),
)
#: Notices that carry the recipient's link.
_WITH_LINK = {Notice.YOUR_TURN, Notice.REMINDER, Notice.COPY, Notice.COMPLETED}


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
        origin: Origin = NOWHERE,
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
            if field.kind is FieldKind.CROSS_PAGE_SEAL and documents[field.document].pages < 2:
                raise Conflict("a cross-page seal needs a document of two pages or more")
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
            record_event(
                session, envelope.id, "envelope.created", sender_id, origin,
                document_hashes=[d.sha256 for d in documents],
                details={"title": envelope.title, "policy": f"{policy.name}@{policy.version}",
                         "recipients": str(len(envelope.recipients))},
            )  # fmt: skip
            return envelope.id

    def existing(self, organisation_id: str, idempotency_key: str) -> str | None:
        """The envelope an earlier create with this idempotency key made, if any."""
        with self.sessions() as session:
            return session.scalar(
                select(Envelope.id).where(
                    Envelope.organisation_id == organisation_id,
                    Envelope.idempotency_key == idempotency_key,
                )
            )

    def get(self, organisation_id: str, envelope_id: str, sender_id: str | None = None) -> Envelope:
        """One envelope with its documents, recipients and fields (`sender_id`: only if
        it is theirs); another organisation's id, or another sender's, is not found."""
        with self.sessions() as session:
            query = _visible(organisation_id, sender_id).where(Envelope.id == envelope_id)
            envelope = session.scalar(query.options(*_WHOLE))
            if envelope is None:
                raise NotFound(f"no envelope {envelope_id}")
            return envelope

    def list(
        self,
        organisation_id: str,
        sender_id: str | None = None,
        *,
        status: str | None = None,
        text: str | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[Envelope]:
        """Newest first, `limit` at most, after the cursor (created_at, id) of the last seen."""
        query = _visible(organisation_id, sender_id)
        if status is not None:
            query = query.where(Envelope.status == status)
        if text:
            pattern = "%" + text.replace("\\", "").replace("%", "").replace("_", "") + "%"
            query = query.where(
                Envelope.title.ilike(pattern)
                | Envelope.id.in_(
                    select(Recipient.envelope_id).where(
                        Recipient.name.ilike(pattern)
                        | Recipient.email.ilike(pattern)
                        | Recipient.mobile.ilike(pattern)
                    )
                )
            )
        if after is not None:
            created, last_id = after
            query = query.where(
                (Envelope.created_at < created)
                | ((Envelope.created_at == created) & (Envelope.id < last_id))
            )
        query = query.order_by(Envelope.created_at.desc(), Envelope.id.desc()).limit(limit)
        with self.sessions() as session:
            return list(session.scalars(query.options(*_WHOLE)))

    def send(
        self, organisation_id: str, envelope_id: str, actor: str, origin: Origin = NOWHERE,
        sender_id: str | None = None,
    ) -> None:  # fmt: skip
        self._act(organisation_id, envelope_id, routing.Send(), actor, origin, sender_id)

    def void(
        self, organisation_id: str, envelope_id: str, actor: str, origin: Origin = NOWHERE,
        sender_id: str | None = None, reason: str = "",
    ) -> None:  # fmt: skip
        self._act(organisation_id, envelope_id, routing.Void(), actor, origin, sender_id,
                  reason=reason)  # fmt: skip

    def expire(self, organisation_id: str, envelope_id: str) -> None:
        """The deadline passed: the envelope stops and everyone is told (the deadline
        watch calls this; an envelope already finished is refused, changing nothing)."""
        self._act(organisation_id, envelope_id, routing.Expire(), "system:deadline", NOWHERE,
                  None)  # fmt: skip

    def remind(
        self, organisation_id: str, envelope_id: str, actor: str, origin: Origin = NOWHERE,
        sender_id: str | None = None, only: frozenset[str] | None = None,
    ) -> tuple[str, ...]:  # fmt: skip
        """Remind everyone whose turn it is (or those of them in `only`), with their
        current link; their ids."""
        with self.sessions.begin() as session:
            query = _visible(organisation_id, sender_id).where(Envelope.id == envelope_id)
            envelope = session.scalar(query)
            if envelope is None:
                raise NotFound(f"no envelope {envelope_id}")
            if routing.EnvelopeStatus(envelope.status) not in routing.OPEN:
                raise Conflict(f"the envelope is {envelope.status}: there is nobody to remind")
            active = [
                r
                for r in envelope.recipients
                if r.status == routing.RecipientStatus.ACTIVE.value
                and r.locked_at is None
                and (only is None or r.id in only)
            ]
            policy = self.policy(envelope.policy_name)
            for recipient in active:
                self._notify(session, envelope, recipient, Notice.REMINDER, policy)
            record_event(
                session, envelope.id, "envelope.reminded", actor, origin,
                details={"recipients": ",".join(r.id for r in active)},
            )  # fmt: skip
            return tuple(r.id for r in active)

    # -- the recipient's side -------------------------------------------------------------

    def open(self, token: str, origin: Origin = NOWHERE) -> LinkView:
        """What the link shows; a link opened out of turn says so and enables nothing."""
        with self.sessions.begin() as session:
            recipient, envelope = self._by_link(session, token)
            state = routing_state(envelope)
            try:
                routing.may_act(state, recipient.id)
                blocked = None
            except routing.Refused as refused:
                blocked = refused.code
            record_event(
                session, envelope.id, "link.opened", _actor(recipient), origin,
                details={"recipient": recipient.id, **({"blocked": blocked} if blocked else {})},
            )  # fmt: skip
            return LinkView(
                envelope.id, recipient.id, envelope.title, envelope.status,
                recipient.status, blocked, recipient.identity_verified_at is not None,
            )  # fmt: skip

    def decline(self, token: str, reason: str, origin: Origin = NOWHERE) -> None:
        with self.sessions.begin() as session:
            recipient, envelope = self._by_link(session, token)
            self._require_identity(recipient)
            recipient.decline_reason = reason
            self._apply(session, envelope, routing.Decline(recipient.id), _actor(recipient),
                        origin, reason=reason, actor=recipient.name)  # fmt: skip

    def approve(self, token: str, origin: Origin = NOWHERE) -> None:
        """An approver's yes (no signature image); their rejection is `decline`."""
        with self.sessions.begin() as session:
            recipient, envelope = self._by_link(session, token)
            self._require_identity(recipient)
            if recipient.role != routing.RecipientRole.APPROVER.value:
                raise Forbidden("only an approver approves; a signer signs")
            self._apply(session, envelope, routing.Approve(recipient.id), _actor(recipient),
                        origin, actor=recipient.name)  # fmt: skip

    def delegate(
        self, token: str, successor: SuccessorIn, origin: Origin = NOWHERE
    ) -> tuple[str, str, str]:
        """The recipient whose turn it is hands it to `successor` (代理授权): same role,
        group and fields; the old link is revoked, the delegate gets their own and
        passes the identity check as anyone does.  (envelope, recipient, delegate) ids."""
        with self.sessions.begin() as session:
            recipient, envelope = self._by_link(session, token)
            self._require_identity(recipient)
            newcomer = _successor(envelope, recipient, successor)
            self._transition(session, envelope, routing.Delegate(recipient.id, newcomer.id),
                             _actor(recipient), origin, newcomer,
                             {"reason": successor.reason, "actor": recipient.name})  # fmt: skip
            _hand_fields(session, recipient, newcomer)
            return envelope.id, recipient.id, newcomer.id

    def forward(
        self, organisation_id: str, envelope_id: str, recipient_id: str,
        successor: SuccessorIn, actor: str, origin: Origin = NOWHERE,
        sender_id: str | None = None,
    ) -> str:  # fmt: skip
        """The sender replaces a recipient who has not acted yet (转交)."""
        with self.sessions.begin() as session:
            query = _visible(organisation_id, sender_id).where(Envelope.id == envelope_id)
            envelope = session.scalar(query)
            if envelope is None:
                raise NotFound(f"no envelope {envelope_id}")
            recipient = next((r for r in envelope.recipients if r.id == recipient_id), None)
            if recipient is None:
                raise NotFound(f"no recipient {recipient_id} on this envelope")
            newcomer = _successor(envelope, recipient, successor)
            self._transition(session, envelope, routing.Forward(recipient.id, newcomer.id),
                             actor, origin, newcomer, {"reason": successor.reason})  # fmt: skip
            _hand_fields(session, recipient, newcomer)
            return newcomer.id

    def apply_action(
        self, session: Session, envelope: Envelope, action: routing.Action, who: str,
        origin: Origin, **values: str,
    ) -> None:  # fmt: skip
        """A routing action inside the caller's transaction (the signing step's)."""
        self._apply(session, envelope, action, who, origin, **values)

    # -- internals ------------------------------------------------------------------------

    def _act(
        self, organisation_id: str, envelope_id: str, action: routing.Action, actor: str,
        origin: Origin, sender_id: str | None, **values: str,
    ) -> None:  # fmt: skip
        with self.sessions.begin() as session:
            query = _visible(organisation_id, sender_id).where(Envelope.id == envelope_id)
            envelope = session.scalar(query)
            if envelope is None:
                raise NotFound(f"no envelope {envelope_id}")
            self._apply(session, envelope, action, actor, origin, **values)

    def _apply(
        self, session: Session, envelope: Envelope, action: routing.Action, who: str,
        origin: Origin, **values: str,
    ) -> None:  # fmt: skip
        """`who` acted (the ledger's actor); `values` fill the notices' templates."""
        self._transition(session, envelope, action, who, origin, None, values)

    def _transition(
        self, session: Session, envelope: Envelope, action: routing.Action, who: str,
        origin: Origin, newcomer: Recipient | None, values: dict[str, str],
    ) -> None:  # fmt: skip
        """`_apply`, with the recipient a delegation or forward adds (the action names it)."""
        try:
            outcome = routing.apply(routing_state(envelope), action)
        except routing.Refused as refused:
            raise RoutingRefused(refused) from None
        now = self.clock()
        details = {"reason": values["reason"]} if values.get("reason") else {}
        if newcomer is not None:
            envelope.recipients.append(newcomer)
            details["successor"] = newcomer.id
            details["replaces"] = newcomer.replaces_id or ""
        record_event(
            session, envelope.id, _EVENT_TYPES[type(action)], who, origin,
            document_hashes=[d.current_sha256 for d in envelope.documents],
            details=details | {"status": outcome.envelope.status.value},
        )  # fmt: skip
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
                # completion (B-LTA, sealed evidence) is not built yet: the ledger says
                # it is due, so a completion job can find every envelope owed one
                hashes = [d.current_sha256 for d in envelope.documents]
                record_event(session, envelope.id, "envelope.completion_due", who, origin,
                             document_hashes=hashes)  # fmt: skip

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

    @classmethod
    def require_turn(cls, envelope: Envelope, recipient: Recipient) -> None:
        """The identity check passed and it is this recipient's turn, else 403."""
        cls._require_identity(recipient)
        try:
            routing.may_act(routing_state(envelope), recipient.id)
        except routing.Refused as refused:
            raise Forbidden(refused.detail) from None


def _successor(envelope: Envelope, recipient: Recipient, person: SuccessorIn) -> Recipient:
    """The row that takes over `recipient`'s turn (its status comes from routing)."""
    recipient.link_hash = None  # the old link signs nothing more, anywhere
    return Recipient(
        id=new_id(),
        envelope_id=envelope.id,
        position=max(r.position for r in envelope.recipients) + 1,
        role=recipient.role,
        routing_group=recipient.routing_group,
        status=recipient.status,
        name=person.name,
        email=person.email,
        mobile=person.mobile,
        locale=person.locale,
        user_id=None,
        replaces_id=recipient.id,
    )


def _hand_fields(session: Session, recipient: Recipient, newcomer: Recipient) -> None:
    """The replaced recipient's fields become the successor's, emptied: a value the
    first person typed is not signed by the second."""
    session.flush()  # the successor's row exists before fields point at it
    for field in session.scalars(
        select(EnvelopeField).where(EnvelopeField.recipient_id == recipient.id)
    ):
        field.recipient_id = newcomer.id
        field.value = None


def _visible(organisation_id: str, sender_id: str | None) -> Select[Envelope]:
    query = select(Envelope).where(Envelope.organisation_id == organisation_id)
    return query if sender_id is None else query.where(Envelope.sender_id == sender_id)


def _actor(recipient: Recipient) -> str:
    """A recipient in the ledger: their id and how they were reached (not a secret)."""
    return f"recipient:{recipient.id}"


def routing_state(envelope: Envelope) -> routing.Envelope:
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
