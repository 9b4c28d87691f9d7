"""Handing queued messages to the mail server or SMS gateway, and recording what it said.

Every row's state is a fact a server reported (`DeliveryState`): `accepted` only when
the server took the message, `failed` with the server's reason, never "sent" on
hope.  A refusal that may heal (SMTP 4xx, a gateway that is down or answers 429/5xx)
is tried again with exponential back-off and jitter (`retry_delay`), up to
`MAX_ATTEMPTS`, the reason of each attempt kept in `detail`; a permanent one fails at
once.  An admin can resend a failed message (`resend`).

Links are never stored usable: when a message with a link is sent, the recipient's
current token is derived again (`signet.portal.links`) and put where the stored body
has the mask; a link superseded or finished since is not sent (it would not open).
A one-time code is sent once, from memory, right after the transaction that made it
(`deliver_now`); a code that could not be sent is failed, never retried: it lives
minutes, and the person asks for a new one.

Delivery is at least once: a dispatcher that dies between the server's answer and
its commit leaves the row `sending`; after `CLAIM_TIMEOUT` another takes it again.
Rows are claimed with a conditional UPDATE, so two replicas never send one row at
the same time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from signet.common.errors import Conflict
from signet.common.notify import Channel, DeliveryState, Message, Notice
from signet.common.notify.messages import MASK, MAX_ATTEMPTS, Delivery, Transport, retry_delay
from signet.portal.notifications.models import OutboxMessage
from signet.portal.notifications.outbox import ONE_TIME_CODES
from signet.portal.schema import utc_now
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

#: A `sending` row older than this was left by a dispatcher that died: taken again.
CLAIM_TIMEOUT = timedelta(minutes=2)
#: A code's message not handed over within this (the portal stopped first) is failed.
CODE_DEADLINE = timedelta(minutes=5)
SENDING = "sending"


#: The recipient's link token as it is now, or None (`envelopes.addressing`).
CurrentLink = Callable[[Session, str], str | None]


class Dispatcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        transports: Mapping[Channel, Transport],
        current_link: CurrentLink,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.sessions, self.transports, self.current_link = sessions, transports, current_link
        self.clock = clock

    # -- one message ---------------------------------------------------------------------

    def deliver_now(self, message_id: str, message: Message) -> DeliveryState:
        """Send a one-time code's message (committed `queued` a moment ago) once."""
        if not self._claim(message_id):
            return DeliveryState.QUEUED  # another dispatcher has it, or it is not queued
        delivery = self._send(message)
        if delivery.state is DeliveryState.FAILED and delivery.retryable:
            delivery = Delivery(
                DeliveryState.FAILED, f"{delivery.detail}; not retried: ask for a new code"
            )
        self._record(message_id, delivery, retry=False)
        return delivery.state

    def resend(self, message_id: str, organisation_id: str) -> OutboxMessage | None:
        """Queue a failed message again (an admin's resend); None if it is not this
        organisation's.  A code's message cannot be resent: the person asks anew."""
        with self.sessions.begin() as session:
            row = session.get(OutboxMessage, message_id)
            if row is None or row.organisation_id != organisation_id:
                return None
            if row.state != DeliveryState.FAILED.value or Notice(row.notice) in ONE_TIME_CODES:
                raise ResendRefused(row.state, Notice(row.notice) in ONE_TIME_CODES)
            row.state, row.next_attempt_at = DeliveryState.QUEUED.value, self.clock()
            row.detail = f"resent by an administrator after: {row.detail}"[:2000]
            row.updated_at = self.clock()
            return row

    # -- the periodic pass -------------------------------------------------------------------

    def run_due(self, limit: int = 20) -> int:
        """Send every message that is due (at most `limit`); how many were tried."""
        self._give_back_abandoned()
        with self.sessions() as session:
            due = list(
                session.scalars(
                    select(OutboxMessage.id)
                    .where(
                        OutboxMessage.state == DeliveryState.QUEUED.value,
                        OutboxMessage.next_attempt_at.is_not(None),
                        OutboxMessage.next_attempt_at <= self.clock(),
                    )
                    .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                    .limit(limit)
                )
            )
        tried = 0
        for message_id in due:
            if not self._claim(message_id):
                continue
            tried += 1
            message = self._message(message_id)
            if isinstance(message, Delivery):
                self._record(message_id, message, retry=False)
                continue
            self._record(message_id, self._send(message), retry=True)
        return tried

    def _give_back_abandoned(self) -> None:
        """Rows a dead dispatcher left `sending` are queued again; codes never sent in
        their life are failed (their row had no schedule)."""
        now = self.clock()
        with self.sessions.begin() as session:
            session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.state == SENDING,
                    OutboxMessage.claimed_at < now - CLAIM_TIMEOUT,
                    OutboxMessage.next_attempt_at.is_not(None),
                )
                .values(state=DeliveryState.QUEUED.value, updated_at=now)
            )
            session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.next_attempt_at.is_(None),
                    or_(
                        and_(
                            OutboxMessage.state == DeliveryState.QUEUED.value,
                            OutboxMessage.created_at < now - CODE_DEADLINE,
                        ),
                        and_(
                            OutboxMessage.state == SENDING,
                            OutboxMessage.claimed_at < now - CLAIM_TIMEOUT,
                        ),
                    ),
                )
                .values(
                    state=DeliveryState.FAILED.value,
                    detail="not handed to the gateway before the code expired (the portal "
                    "stopped); ask for a new code",
                    updated_at=now,
                )
            )

    # -- steps -------------------------------------------------------------------------------

    def _claim(self, message_id: str) -> bool:
        now = self.clock()
        with self.sessions.begin() as session:
            claimed = session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == message_id,
                    OutboxMessage.state == DeliveryState.QUEUED.value,
                )
                .values(state=SENDING, claimed_at=now, updated_at=now)
            )
            return bool(getattr(claimed, "rowcount", 0) == 1)

    def _message(self, message_id: str) -> Message | Delivery:
        """The message to hand over, its link derived again; or why it is not sent."""
        with self.sessions() as session:
            row = session.get(OutboxMessage, message_id)
            assert row is not None
            body = row.body
            if MASK in body and row.recipient_id is not None:
                token = self.current_link(session, row.recipient_id)
                if token is None:
                    return Delivery(
                        DeliveryState.FAILED,
                        "not sent: the recipient's link is no longer valid (finished, "
                        "declined or replaced by a newer one)",
                    )
                body = body.replace(MASK, token)
            return Message(Channel(row.channel), row.to, row.subject, body, row.locale, secret=None)

    def _send(self, message: Message) -> Delivery:
        transport = self.transports.get(message.channel)
        if transport is None:
            return Delivery(
                DeliveryState.FAILED, f"no {message.channel.value} gateway is configured"
            )
        try:
            return transport.send(message)
        except Exception as exc:  # a transport reports refusals; anything else is a bug
            log.exception("the %s transport raised", message.channel.value)
            detail = f"transport error: {type(exc).__name__}"
            return Delivery(DeliveryState.FAILED, detail, None, retryable=True)

    def _record(self, message_id: str, delivery: Delivery, *, retry: bool) -> None:
        now = self.clock()
        with self.sessions.begin() as session:
            row = session.get(OutboxMessage, message_id)
            assert row is not None
            row.attempts += 1
            row.updated_at = now
            if delivery.provider_id:
                row.provider_id = delivery.provider_id
            wait = retry_delay(row.attempts) if retry and delivery.retryable else None
            if delivery.state is DeliveryState.FAILED and wait is not None:
                row.state = DeliveryState.QUEUED.value
                row.next_attempt_at = now + timedelta(seconds=wait)
                row.detail = (
                    f"attempt {row.attempts} of {MAX_ATTEMPTS} failed: {delivery.detail}; "
                    f"next at {row.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
                )[:2000]
                return
            row.state = delivery.state.value
            row.detail = delivery.detail[:2000]
            if delivery.state is DeliveryState.FAILED and retry and delivery.retryable:
                row.detail = f"gave up after {row.attempts} attempts: {delivery.detail}"[:2000]


class ResendRefused(Conflict):
    code = "resend_refused"

    def __init__(self, state: str, code: bool) -> None:
        super().__init__(
            "a one-time code is not resent: the person asks for a new code"
            if code
            else f"only a failed message can be resent; this one is {state}"
        )
