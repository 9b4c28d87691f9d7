"""The notifier: e-mail over SMTP, SMS through an HTTP gateway, and the outbox's states.

Used by the portal (links, identity codes, notices) and by the signer (intent codes,
which it sends itself: DESIGN.md "Signature activation").  A transport answers with
the *real* state of a message — accepted by the server, or failed with the server's
own reason and whether a retry can help — never "sent" when it was not (the bug all
four peers share).  Persisting messages (the outbox table) is the caller's; this
package decides what may be stored (`Message.stored_body`: a one-time code is kept
only while nothing leaves the machine).
"""

from signet.common.notify.messages import (
    Channel,
    Delivery,
    DeliveryState,
    Message,
    Transport,
    retry_delay,
)
from signet.common.notify.templates import LOCALES, Notice, render

__all__ = [
    "LOCALES",
    "Channel",
    "Delivery",
    "DeliveryState",
    "Message",
    "Notice",
    "Transport",
    "render",
    "retry_delay",
]
