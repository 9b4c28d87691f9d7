"""Subscriptions, their deliveries (one per event and subscription) and each attempt.

A subscription keeps no secret: its signing secret is derived from the portal's secret
key, the subscription's id and a generation (`signet.portal.webhooks.signing`), so the
database alone never lets anyone forge a delivery.
"""

from __future__ import annotations

from datetime import datetime

from signet.portal.schema import Base, IdColumn, new_id, utc_now
from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    #: exact event types or ``prefix.*`` or ``*`` (`signet.portal.webhooks.events`)
    event_types: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(200), default="")
    #: part of the secret's derivation: a new generation is a new secret
    secret_generation: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(IdColumn)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    #: disabled subscriptions get no new deliveries (the log stays readable)
    disabled_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One event for one subscription: the exact body, signed afresh at each attempt."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id"), index=True)
    #: the ledger event's id: the ``webhook-id`` header, the same at every attempt
    event_id: Mapped[str] = mapped_column(IdColumn, index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    envelope_id: Mapped[str] = mapped_column(IdColumn, index=True)
    #: the event's place among its envelope's events (1, 2, …)
    sequence: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    #: pending, delivered or failed
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)
    delivered_at: Mapped[datetime | None]


class WebhookAttempt(Base):
    """What one attempt met: the receiver's status and the first KiB of its answer, or
    why there was no answer."""

    __tablename__ = "webhook_attempts"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    #: the address connected to (resolved once, checked, then used)
    address: Mapped[str | None] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    #: "delivery" (queued by the event) or "replay" (an administrator's)
    trigger: Mapped[str] = mapped_column(String(16), default="delivery")
