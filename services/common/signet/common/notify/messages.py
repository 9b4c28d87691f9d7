"""A message, what became of it, and how long to wait before trying again."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

#: What a one-time code is replaced with in anything stored or logged.
MASK = "••••••"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class DeliveryState(StrEnum):
    """The outbox's states, each one a fact somebody reported."""

    QUEUED = "queued"  # recorded, not yet handed to any server
    HELD = "held"  # embedded default: no gateway configured, kept in the outbox only
    ACCEPTED = "accepted"  # the SMTP server / SMS gateway took it (not yet "delivered")
    DELIVERED = "delivered"  # a delivery receipt arrived
    FAILED = "failed"  # refused or unreachable; `Delivery.detail` says why


@dataclass(frozen=True)
class Message:
    """One notification to one address.

    `secret` is the one-time code the body contains, if any: it is what `stored_body`
    masks once a real transport carries the message, so no outbox ever keeps a code
    that has left the machine.
    """

    channel: Channel
    to: str
    subject: str
    body: str
    locale: str = "en"
    secret: str | None = None

    def stored_body(self, state: DeliveryState) -> str:
        """The body as the outbox may keep it in `state`."""
        if self.secret is None or state is DeliveryState.HELD:
            return self.body
        return self.body.replace(self.secret, MASK)


@dataclass(frozen=True)
class Delivery:
    """What a transport learnt.  `retryable` is False for a permanent refusal (SMTP 5xx,
    an invalid number), True for what may heal (4xx, a server that is down)."""

    state: DeliveryState
    detail: str = ""
    provider_id: str | None = None
    retryable: bool = False


class Transport(Protocol):
    """Sends one message over one channel; never raises for a refusal, reports it."""

    channel: Channel

    def send(self, message: Message) -> Delivery: ...


#: Retries stop after this many attempts; the message stays `failed` with the last reason.
MAX_ATTEMPTS = 8


def retry_delay(attempt: int, *, base: float = 30.0, cap: float = 3600.0) -> float | None:
    """Seconds to wait before attempt `attempt + 1` (exponential, full jitter), or None
    when `attempt` was the last one.  Jitter keeps a recovering server from being hit
    by every queued message at the same second."""
    if attempt >= MAX_ATTEMPTS:
        return None
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    jitter: float = secrets.SystemRandom().uniform(0, ceiling / 2)
    return ceiling / 2 + jitter
