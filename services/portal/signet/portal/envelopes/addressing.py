"""Where a recipient's messages go: the contact the sender entered, never one the
person opening a link names."""

from __future__ import annotations

from signet.common.notify import Channel
from signet.portal.envelopes.models import Recipient
from signet.portal.notifications.outbox import Addressee


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
