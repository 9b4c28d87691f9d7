"""Deadlines and reminders: an envelope past its deadline expires, and whoever's turn
it is gets the policy's reminders (`reminder_days` after their turn began).

Idempotent by construction, so any replica may run it at any time: an expired
envelope is no longer open (the next pass skips it, and `expire` refuses it), and the
reminders already sent are counted from the outbox, so the k-th reminder goes once.
A recipient's turn began when the envelope was sent or when the last member of the
groups before theirs finished, whichever is later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from signet.common.errors import Conflict, NotFound
from signet.common.notify import Notice
from signet.portal.envelopes import routing
from signet.portal.envelopes.models import Envelope, Recipient
from signet.portal.envelopes.service import EnvelopeService, RoutingRefused
from signet.portal.notifications.models import OutboxMessage
from signet.portal.schema import utc_now
from sqlalchemy import func, select
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_OPEN = [status.value for status in routing.OPEN]


class DeadlineWatch:
    def __init__(
        self, envelopes: EnvelopeService, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.envelopes, self.clock = envelopes, clock

    def run_once(self) -> tuple[int, int]:
        """Expire what is overdue, then send the reminders that are due: (expired, reminded)."""
        return self.expire_overdue(), self.remind_due()

    def look(self) -> None:
        """One pass for `PeriodicThread` (None: what was found is no reason to look
        again before the next interval)."""
        self.run_once()

    def expire_overdue(self) -> int:
        with self.envelopes.sessions() as session:
            overdue = session.execute(
                select(Envelope.organisation_id, Envelope.id).where(
                    Envelope.status.in_(_OPEN),
                    Envelope.deadline.is_not(None),
                    Envelope.deadline <= self.clock(),
                )
            ).all()
        expired = 0
        for organisation_id, envelope_id in overdue:
            try:
                self.envelopes.expire(organisation_id, envelope_id)
                expired += 1
            except RoutingRefused:  # finished meanwhile (another replica, a last signature)
                continue
        return expired

    def remind_due(self) -> int:
        now = self.clock()
        due: list[tuple[str, str, frozenset[str]]] = []
        with self.envelopes.sessions() as session:
            envelopes = session.scalars(
                select(Envelope).where(Envelope.status.in_(_OPEN), Envelope.sent_at.is_not(None))
            ).all()
            for envelope in envelopes:
                days = sorted(self.envelopes.policy(envelope.policy_name).spec.reminder_days)
                if not days:
                    continue
                owed = frozenset(
                    r.id
                    for r in _active(envelope)
                    if _reminders_owed(days, _turn_began(envelope, r), now)
                    > _reminders_sent(session, r.id)
                )
                if owed:
                    due.append((envelope.organisation_id, envelope.id, owed))
        reminded = 0
        for organisation_id, envelope_id, owed in due:
            try:
                reminded += len(
                    self.envelopes.remind(
                        organisation_id, envelope_id, "system:reminder", only=owed
                    )
                )
            except (RoutingRefused, Conflict, NotFound):
                continue
            except Exception:  # one envelope's trouble must not stop the others
                log.exception("reminding envelope %s failed", envelope_id)
        return reminded


def _active(envelope: Envelope) -> list[Recipient]:
    return [
        r
        for r in envelope.recipients
        if r.status == routing.RecipientStatus.ACTIVE.value and r.locked_at is None
    ]


def _turn_began(envelope: Envelope, recipient: Recipient) -> datetime:
    assert envelope.sent_at is not None
    before = [
        r.finished_at
        for r in envelope.recipients
        if r.routing_group < recipient.routing_group and r.finished_at is not None
    ]
    return max([envelope.sent_at, *before])


def _reminders_owed(days: list[int], began: datetime, now: datetime) -> int:
    return sum(1 for d in days if now >= began + timedelta(days=d))


def _reminders_sent(session: Session, recipient_id: str) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.recipient_id == recipient_id,
            OutboxMessage.notice == Notice.REMINDER.value,
        )
    )
    return int(count or 0)
