"""Where a recipient's messages go: the contact the sender entered, never one the
person opening a link names."""

from __future__ import annotations

from signet.common.notify import Channel
from signet.portal.envelopes.models import Recipient
from signet.portal.links import link_token, link_token_hash
from signet.portal.notifications.outbox import Addressee
from sqlalchemy.orm import Session


def recipient_channel(recipient: Recipient, prefer: Channel | None = None) -> tuple[Channel, str]:
    """The recipient's address on the preferred channel, or on the one they have."""
    if prefer is Channel.SMS and recipient.mobile:
        return Channel.SMS, recipient.mobile
    if prefer is Channel.EMAIL and recipient.email:
        return Channel.EMAIL, recipient.email
    if recipient.email:
        return Channel.EMAIL, recipient.email
    assert recipient.mobile is not None  # the contract requires one of the two
    return Channel.SMS, recipient.mobile


def addressee(recipient: Recipient, prefer: Channel | None = None) -> Addressee:
    channel, to = recipient_channel(recipient, prefer)
    return Addressee(channel, to, recipient.locale, recipient.envelope_id, recipient.id)


def current_link_token(session: Session, link_key: bytes, recipient_id: str) -> str | None:
    """The recipient's link token as it is now (derived again, never stored), or None
    when they have no valid link (finished, declined, or the link was replaced)."""
    recipient = session.get(Recipient, recipient_id)
    if recipient is None or recipient.link_hash is None:
        return None
    token = link_token(link_key, recipient.id, recipient.link_generation)
    return token if link_token_hash(token) == recipient.link_hash else None
