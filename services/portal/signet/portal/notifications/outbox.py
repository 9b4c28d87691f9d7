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
    subject, body = render(notice, addressee.locale, **values)
    message = Message(addressee.channel, addressee.to, subject, body, addressee.locale, secret)
    state = DeliveryState.HELD if held else DeliveryState.QUEUED
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
    )
    session.add(row)
    return row
