"""The signer's outbox: each activation code's message and what became of it.

The signer sends a code itself, once, from memory, right after the activation is
stored (DESIGN.md "Signature activation"): the portal never sees it.  A code is
never retried (it lives five minutes; the person asks for a new one), so this is a
log of facts, not a queue.  With no gateway configured (the embedded default) the
message is `held` and its body readable: an administrator relays the code
(`signet outbox`).  With a gateway, the stored body has the code masked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from signet.common.contracts.signer import ContactChannel, SignerOutboxEntry
from signet.common.notify import Channel, Delivery, DeliveryState, Message, Transport
from signet.signer.activation.tables import OutboxRow
from signet.signer.registry import Registry
from signet.signer.schema import aware
from sqlalchemy import select

log = logging.getLogger(__name__)


class Outbox:
    def __init__(
        self,
        registry: Registry,
        transports: Mapping[Channel, Transport],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry, self.transports, self.clock = registry, transports, clock

    @property
    def held(self) -> bool:
        """No gateway at all: nothing leaves the machine, an admin relays codes."""
        return not self.transports

    def send(self, activation_id: str, message: Message) -> Delivery:
        """Record the message, hand it to its transport once, record the answer."""
        if self.held:
            delivery = Delivery(DeliveryState.HELD, "kept in the signer's outbox: no gateway")
            self._add(activation_id, message, delivery)
            return delivery
        row_id = self._add(activation_id, message, Delivery(DeliveryState.QUEUED))
        delivery = self._hand_over(message)
        with self.registry.session() as session, session.begin():
            row = session.get(OutboxRow, row_id)
            assert row is not None
            row.state = delivery.state.value
            row.detail = delivery.detail[:2000]
            row.provider_id = delivery.provider_id
            row.body = message.stored_body(delivery.state)
            row.updated_at = self.clock()
        return delivery

    def _hand_over(self, message: Message) -> Delivery:
        transport = self.transports.get(message.channel)
        if transport is None:
            return Delivery(
                DeliveryState.FAILED, f"no {message.channel.value} gateway is configured"
            )
        try:
            delivery = transport.send(message)
        except Exception as exc:  # a transport reports refusals; anything else is a bug
            log.exception("the %s transport raised", message.channel.value)
            return Delivery(DeliveryState.FAILED, f"transport error: {type(exc).__name__}")
        if delivery.state is DeliveryState.FAILED and delivery.retryable:
            return Delivery(
                DeliveryState.FAILED, f"{delivery.detail}; not retried: ask for a new code"
            )
        return delivery

    def _add(self, activation_id: str, message: Message, delivery: Delivery) -> int:
        now = self.clock()
        row = OutboxRow(
            activation_id=activation_id,
            channel=message.channel.value,
            to=message.to,
            locale=message.locale,
            subject=message.subject,
            # queued: masked already, so a crash mid-send never leaves a readable code
            body=message.stored_body(delivery.state),
            state=delivery.state.value,
            detail=delivery.detail,
            provider_id=delivery.provider_id,
            created_at=now,
            updated_at=now,
        )
        with self.registry.session() as session, session.begin():
            session.add(row)
            session.flush()
            return row.id

    def entries(self, limit: int = 50, activation_id: str | None = None) -> list[SignerOutboxEntry]:
        """Newest first."""
        query = select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)
        if activation_id is not None:
            query = query.where(OutboxRow.activation_id == activation_id)
        with self.registry.session() as session:
            return [entry(row) for row in session.scalars(query)]


def entry(row: OutboxRow) -> SignerOutboxEntry:
    created, updated = aware(row.created_at), aware(row.updated_at)
    assert created is not None and updated is not None
    return SignerOutboxEntry(
        id=row.id,
        activation_id=row.activation_id,
        channel=ContactChannel(row.channel),
        to=row.to,
        locale=row.locale,
        subject=row.subject,
        body=row.body,
        state=row.state,
        detail=row.detail,
        created_at=created,
        updated_at=updated,
    )
