"""The identity check when a link is opened: a one-time code to the contact on record.

The code goes to the recipient's e-mail or mobile as the sender entered it, never to
an address the person opening the link names.  Five wrong codes lock the link and
tell the sender; codes are stored as HMACs (`signet.common.otp`), live five minutes
and check once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from signet.common.contracts.appliance import IdentityCheck
from signet.common.errors import Forbidden, SignetError
from signet.common.notify import Channel, DeliveryState, Message, Notice
from signet.common.otp import CODE_LIFETIME, CodeVerdict, IssuedCode, check_code, issue_code
from signet.portal.accounts.models import User
from signet.portal.envelopes.addressing import addressee, recipient_channel
from signet.portal.envelopes.models import Envelope, Recipient
from signet.portal.envelopes.service import EnvelopeService
from signet.portal.evidence.record import NOWHERE, Origin, record_event
from signet.portal.identity.models import IdentityCode
from signet.portal.notifications.outbox import Addressee, enqueue, enqueue_message
from signet.portal.schema import utc_now
from sqlalchemy import select
from sqlalchemy.orm import Session

_CHANNELS = {IdentityCheck.OTP_EMAIL: Channel.EMAIL, IdentityCheck.OTP_SMS: Channel.SMS}


class CodeRefused(SignetError):
    status_code = 403

    def __init__(self, verdict: CodeVerdict, remaining: int) -> None:
        detail = {
            CodeVerdict.WRONG: f"wrong code; {remaining} attempts left",
            CodeVerdict.EXPIRED: "the code has expired; ask for a new one",
            CodeVerdict.USED: "this code was already used; ask for a new one",
            CodeVerdict.LOCKED: "too many wrong codes: the link is locked and the sender told",
        }[verdict]
        super().__init__(detail)
        self.code = f"code_{verdict.value}"
        self.remaining = remaining


@dataclass(frozen=True)
class _RecordedCode:
    channel: Channel
    to: str
    message_id: str | None
    message: Message


@dataclass(frozen=True)
class CodeSent:
    channel: Channel
    #: the address, partly hidden, for the page to say where the code went
    to: str


#: Sends a code's message once, right after the commit that recorded it (the
#: dispatcher's `deliver_now`); None when messages are held in the outbox.
DeliverNow = Callable[[str, Message], object]


class IdentityService:
    def __init__(self, envelopes: EnvelopeService, deliver: DeliverNow | None = None) -> None:
        self.envelopes, self.deliver = envelopes, deliver

    def request_code(self, token: str, origin: Origin = NOWHERE) -> CodeSent:
        sent = self._record_code(token, origin)
        if self.deliver is not None and sent.message_id is not None:
            # after the commit: a code is never sent for a request that was rolled back
            self.deliver(sent.message_id, sent.message)
        return CodeSent(sent.channel, sent.to)

    def _record_code(self, token: str, origin: Origin) -> _RecordedCode:
        with self.envelopes.sessions.begin() as session:
            recipient, envelope = self.envelopes.by_link(session, token)
            if recipient.locked_at is not None:
                raise Forbidden("this link is locked after too many wrong codes")
            channel = self._channel(recipient, envelope)
            code, issued = issue_code(
                self.envelopes.keys.code_key, _purpose(recipient), now=self.envelopes.clock()
            )
            session.add(
                IdentityCode(
                    recipient_id=recipient.id, channel=channel.value, digest=issued.digest,
                    purpose=issued.purpose, expires_at=issued.expires_at,
                    created_at=self.envelopes.clock(),
                )
            )  # fmt: skip
            row, message = enqueue_message(
                session, addressee(recipient, channel), Notice.IDENTITY_CODE,
                held=self.envelopes.held, organisation_id=envelope.organisation_id, secret=code,
                title=envelope.title, code=code,
                minutes=str(int(CODE_LIFETIME.total_seconds() // 60)),
            )  # fmt: skip
            record_event(
                session, envelope.id, "identity.code_sent", f"recipient:{recipient.id}", origin,
                details={"channel": channel.value, "to": _hide(row.to)},
            )  # fmt: skip
            session.flush()  # the row's id, for the send after the commit
            held = row.state == DeliveryState.HELD.value
            return _RecordedCode(channel, _hide(row.to), None if held else row.id, message)

    def verify(self, token: str, presented: str, origin: Origin = NOWHERE) -> None:
        """Pass the identity check, or raise `CodeRefused` (the attempt is counted)."""
        refusal: CodeRefused | None = None
        with self.envelopes.sessions.begin() as session:
            recipient, envelope = self.envelopes.by_link(session, token)
            if recipient.locked_at is not None:
                raise CodeRefused(CodeVerdict.LOCKED, 0)
            row = session.scalar(
                select(IdentityCode)
                .where(IdentityCode.recipient_id == recipient.id)
                .order_by(IdentityCode.created_at.desc())
                .limit(1)
            )
            if row is None:
                raise Forbidden("ask for a code first")
            record = IssuedCode(row.digest, row.purpose, row.expires_at, row.attempts, row.used)
            result = check_code(
                self.envelopes.keys.code_key, record, presented,
                purpose=_purpose(recipient), now=self.envelopes.clock(),
            )  # fmt: skip
            row.attempts, row.used = result.record.attempts, result.record.used
            actor, method = f"recipient:{recipient.id}", f"otp-{row.channel}"
            if result.verdict is CodeVerdict.ACCEPTED:
                recipient.identity_verified_at = self.envelopes.clock()
                recipient.identity_method = method
                record_event(session, envelope.id, "identity.passed", actor, origin,
                             auth_method=method)  # fmt: skip
                return
            outcome = (
                "identity.locked" if result.verdict is CodeVerdict.LOCKED else "identity.failed"
            )
            record_event(session, envelope.id, outcome, actor, origin, auth_method=method,
                         details={"verdict": result.verdict.value})  # fmt: skip
            if result.verdict is CodeVerdict.LOCKED:
                recipient.locked_at = utc_now()
                self._tell_sender(session, recipient, envelope)
            refusal = CodeRefused(result.verdict, result.remaining)
        # raised after the commit: the counted attempt (and a lock) must be kept
        raise refusal

    def _channel(self, recipient: Recipient, envelope: Envelope) -> Channel:
        checks = self.envelopes.policy(envelope.policy_name).spec.identity_checks
        contacts = {Channel.SMS: recipient.mobile, Channel.EMAIL: recipient.email}
        for check in checks:
            wanted = _CHANNELS.get(check)
            if wanted is not None and contacts[wanted]:
                return wanted
        return recipient_channel(recipient)[0]

    def _tell_sender(self, session: Session, recipient: Recipient, envelope: Envelope) -> None:
        sender = session.get(User, envelope.sender_id)
        if sender is None:  # pragma: no cover - a sender is never deleted
            return
        enqueue(
            session,
            Addressee(Channel.EMAIL, sender.email, sender.locale, envelope.id, recipient.id),
            Notice.LOCKED, held=self.envelopes.held,
            organisation_id=envelope.organisation_id, title=envelope.title, actor=recipient.name,
        )  # fmt: skip


def _purpose(recipient: Recipient) -> str:
    return f"identity:{recipient.id}:{recipient.link_generation}"


def _hide(address: str) -> str:
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"{address[:3]}****{address[-2:]}"
