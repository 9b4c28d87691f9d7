"""Every recorded step becomes a delivery to each matching subscription, in the step's
own transaction.

The hook is a SQLAlchemy ``after_insert`` listener on `LedgerEvent`: wherever
`signet.portal.evidence.record.record_event` is called, the row it adds is flushed
inside the caller's transaction, and this writes the deliveries and their jobs on the
same connection.  So a step that commits has its deliveries queued, and one that rolls
back has none; the workflow modules do not change, and the evidence package does not
depend on webhooks.

The body is made here, once, from the event as recorded (it is signed afresh at each
attempt, so every attempt and a replay send the same bytes).  The per-envelope sequence
is the event's place among its envelope's ledger events (1, 2, …, counted by the ledger's
own order, so rows flushed together still differ): the workflow makes one envelope's
steps one after another, and the receiver orders and de-duplicates by it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from signet.portal.envelopes.models import Envelope
from signet.portal.evidence.models import LedgerEvent
from signet.portal.jobs.queue import enqueue
from signet.portal.schema import new_id
from signet.portal.webhooks.events import matches
from signet.portal.webhooks.models import WebhookDelivery, WebhookSubscription
from sqlalchemy import Connection, event, func, insert, select
from sqlalchemy.orm import Mapper, Session, object_session

JOB_KIND = "webhook.deliver"
#: Deliveries are retried for a day after the event, then failed.
GIVE_UP_AFTER = timedelta(days=1)
PENDING = "pending"

_give_up_after = [GIVE_UP_AFTER]
#: Called after a transaction that queued deliveries commits (this process's jobs
#: thread, so that a delivery leaves at once instead of at the next poll).
_wakers: set[Callable[[], None]] = set()
_QUEUED = "signet.webhooks.queued"


def install(give_up_after: timedelta = GIVE_UP_AFTER) -> None:
    """Listen for new ledger events: once per process (the listener is the mapper's, so
    every portal of the process shares it, and the last `give_up_after` given)."""
    _give_up_after[0] = give_up_after
    if not event.contains(LedgerEvent, "after_insert", _on_event):
        event.listen(LedgerEvent, "after_insert", _on_event)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _forget)


def wake_on_commit(waker: Callable[[], None], *, remove: bool = False) -> None:
    """Call `waker` whenever a transaction that queued deliveries commits."""
    if remove:
        _wakers.discard(waker)
    else:
        _wakers.add(waker)


def _after_commit(session: Session) -> None:
    if session.info.pop(_QUEUED, False):
        for waker in list(_wakers):
            waker()


def _forget(session: Session) -> None:
    session.info.pop(_QUEUED, None)


def ordering_key(subscription_id: str, envelope_id: str) -> str:
    return f"webhook:{subscription_id}:{envelope_id}"


def _on_event(_mapper: Mapper[Any], connection: Connection, row: LedgerEvent) -> None:
    organisation_id = connection.scalar(
        select(Envelope.organisation_id).where(Envelope.id == row.envelope_id)
    )
    if organisation_id is None:
        return
    subscriptions = [
        (s_id, types)
        for s_id, types in connection.execute(
            select(WebhookSubscription.id, WebhookSubscription.event_types).where(
                WebhookSubscription.organisation_id == organisation_id,
                WebhookSubscription.disabled_at.is_(None),
            )
        )
        if matches(types, row.event_type)
    ]
    if not subscriptions:
        return
    sequence = connection.scalar(
        select(func.count())
        .select_from(LedgerEvent)
        .where(LedgerEvent.envelope_id == row.envelope_id, LedgerEvent.sequence <= row.sequence)
    )
    body = envelope_event(row, int(sequence or 1))
    session = object_session(row)
    if session is not None:
        session.info[_QUEUED] = True
    for subscription_id, _ in subscriptions:
        delivery_id = new_id()
        connection.execute(
            insert(WebhookDelivery).values(
                id=delivery_id, subscription_id=subscription_id, event_id=row.id,
                event_type=row.event_type, envelope_id=row.envelope_id, sequence=sequence,
                body=body, state=PENDING, attempts=0, created_at=row.created_at,
                updated_at=row.created_at,
            )
        )  # fmt: skip
        enqueue(
            connection, JOB_KIND, {"delivery_id": delivery_id, "trigger": "delivery"},
            ordering_key=ordering_key(subscription_id, row.envelope_id),
            give_up_after=_give_up_after[0], now=row.created_at,
        )  # fmt: skip


def envelope_event(row: LedgerEvent, sequence: int) -> str:
    """The JSON a receiver gets: what the ledger recorded, less the person's IP address
    and browser (evidence, not integration data)."""
    payload = {
        "id": row.id,
        "type": row.event_type,
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
        "envelope_id": row.envelope_id,
        "sequence": sequence,
        "data": {
            "actor": row.actor,
            "auth_method": row.auth_method,
            "document_hashes": list(row.document_hashes or []),
            "details": dict(row.details or {}),
        },
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
