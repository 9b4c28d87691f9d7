"""Writing messages into the outbox, in the caller's transaction.

A message is recorded in the same transaction as the state change that causes it
(a recipient's turn, a code requested), so a crash never loses one and never sends
one for a change that was rolled back; a dispatcher hands `queued` rows to the
transports afterwards.  With no gateway configured (the embedded default) messages
are `held`: nothing leaves the machine, and an admin reads them (codes included).

With a gateway, a row never holds a secret (`Message.stored_body` masks it): a link
token is derived again from the recipient when the dispatcher sends (see
`signet.portal.links`), and a one-time code is handed to the transport
right after the commit and never retried — a code outlives a retry schedule by
minutes only, and the recipient asks for a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from signet.common.notify import Channel, DeliveryState, Message, Notice, render
from signet.portal.notifications.models import OutboxMessage
from signet.portal.schema import utc_now
from sqlalchemy.orm import Session

#: Notices whose body holds a one-time code: never stored readable once a gateway
#: carries them, never retried (the person asks for a new code).
ONE_TIME_CODES = frozenset({Notice.IDENTITY_CODE, Notice.INTENT_CODE})


@dataclass(frozen=True)
class Addressee:
    """Where one message goes, and which envelope and recipient it is about."""

    channel: Channel
    to: str
    locale: str
    envelope_id: str | None = None
    recipient_id: str | None = None


def enqueue(
    session: Session,
    addressee: Addressee,
    notice: Notice,
    *,
    held: bool,
    organisation_id: str,
    secret: str | None = None,
    **values: str,
) -> OutboxMessage:
    row, _ = enqueue_message(
        session, addressee, notice, held=held, organisation_id=organisation_id, secret=secret,
        **values,
    )  # fmt: skip
    return row


def enqueue_message(
    session: Session,
    addressee: Addressee,
    notice: Notice,
    *,
    held: bool,
    organisation_id: str,
    secret: str | None = None,
    **values: str,
) -> tuple[OutboxMessage, Message]:
    """Record one message; the row, and the message in clear (for `deliver_now`)."""
    subject, body = render(notice, addressee.locale, **values)
    message = Message(addressee.channel, addressee.to, subject, body, addressee.locale, secret)
    state = DeliveryState.HELD if held else DeliveryState.QUEUED
    # a code is sent once, from memory, by its caller after the commit (`Dispatcher.
    # deliver_now`); everything else is the periodic dispatcher's, due at once
    due = None if held or notice in ONE_TIME_CODES else utc_now()
    row = OutboxMessage(
        organisation_id=organisation_id,
        envelope_id=addressee.envelope_id,
        recipient_id=addressee.recipient_id,
        notice=notice.value,
        channel=addressee.channel.value,
        to=addressee.to,
        locale=addressee.locale,
        subject=subject,
        body=message.stored_body(state),
        state=state.value,
        detail="kept in the outbox: no gateway configured" if held else "",
        created_at=utc_now(),
        updated_at=utc_now(),
        next_attempt_at=due,
    )
    session.add(row)
    return row, message
