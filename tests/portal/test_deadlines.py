"""Deadlines and reminders (`signet.portal.envelopes.deadlines`), on a migrated SQLite
portal database, messages held in the outbox (the embedded default).

Asserted: an envelope past its deadline expires once and tells everyone; the policy's
reminders (3 and 7 days by default) go once each, with the recipient's working link,
counted from the turn's start; an envelope that is finished gets none.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from signet.portal import models
from signet.portal.envelopes.contracts import EnvelopeCreate
from signet.portal.envelopes.deadlines import DeadlineWatch
from signet.portal.envelopes.service import EnvelopeService, RoutingRefused

from tests.portal.conftest import DOC, World


@pytest.fixture
def held(world: World) -> World:
    """The same world with messages held (codes and links readable in the outbox)."""
    world.envelopes = EnvelopeService(
        world.envelopes.sessions, world.envelopes.policy, world.envelopes.keys,
        portal_url=world.envelopes.portal_url, held=True, clock=world.clock,
    )  # fmt: skip
    return world


@pytest.fixture
def world(portal_world: World) -> World:
    """This module's world: the migrated portal with its dispatcher (tests/portal/conftest)."""
    return portal_world


def _send(world: World, **extra: object) -> str:
    story = EnvelopeCreate.model_validate(
        {
            "title": "Lease 2027",
            "recipients": [
                {"name": "Approver", "email": "boss@acme.example", "role": "approver"},
                {"name": "María", "mobile": "+34600000000", "group": 1, "locale": "es"},
            ],
            **extra,
        }
    )
    envelope_id = world.envelopes.create(world.organisation_id, world.sender_id, story, [DOC])
    world.envelopes.send(world.organisation_id, envelope_id, world.sender_id)
    return envelope_id


def _notices(world: World, envelope_id: str) -> list[tuple[str, str]]:
    return [(m.notice, m.to) for m in world.outbox(envelope_id)]


def test_an_envelope_past_its_deadline_expires_once_and_everyone_is_told(held: World) -> None:
    deadline = held.clock() + timedelta(days=2)
    envelope_id = _send(held, deadline=deadline.isoformat())
    watch = DeadlineWatch(held.envelopes, clock=held.clock)
    assert watch.expire_overdue() == 0
    held.clock.advance(timedelta(days=2, seconds=1))
    assert watch.expire_overdue() == 1
    assert watch.expire_overdue() == 0  # once
    with held.envelopes.sessions() as session:
        envelope = session.get(models.Envelope, envelope_id)
        assert envelope is not None and envelope.status == "expired"
        events = list(
            session.scalars(
                sa.select(models.LedgerEvent.event_type).where(
                    models.LedgerEvent.envelope_id == envelope_id
                )
            )
        )
    assert "envelope.expired" in events
    assert ("expired", "boss@acme.example") in _notices(held, envelope_id)
    with pytest.raises(RoutingRefused):
        held.envelopes.expire(held.organisation_id, envelope_id)


def test_reminders_go_once_each_on_the_policys_days_with_a_working_link(held: World) -> None:
    envelope_id = _send(held)
    watch = DeadlineWatch(held.envelopes, clock=held.clock)
    reminders = lambda: [n for n in _notices(held, envelope_id) if n[0] == "reminder"]  # noqa: E731
    held.clock.advance(timedelta(days=2))
    assert watch.remind_due() == 0
    held.clock.advance(timedelta(days=1, seconds=1))  # day 3
    assert watch.remind_due() == 1
    assert watch.remind_due() == 0  # the first reminder went already
    held.clock.advance(timedelta(days=3))  # day 6
    assert watch.remind_due() == 0
    held.clock.advance(timedelta(days=1))  # day 7
    assert watch.remind_due() == 1
    body = held.outbox(envelope_id)[-1].body
    token = re.search(r"/s/([A-Za-z0-9_-]{43})", body)
    assert token, body
    assert held.envelopes.open(token.group(1)).blocked is None  # a working link
    held.clock.advance(timedelta(days=5))
    assert watch.remind_due() == 0  # the policy has two reminders
    assert reminders() == [("reminder", "boss@acme.example")] * 2
    # the later group's member is not reminded: it is not her turn
    assert all(to != "+34600000000" for _, to in reminders())


def test_a_finished_envelope_is_neither_reminded_nor_expired(held: World) -> None:
    deadline = held.clock() + timedelta(days=5)
    envelope_id = _send(held, deadline=deadline.isoformat())
    held.envelopes.void(held.organisation_id, envelope_id, held.sender_id)
    held.clock.advance(timedelta(days=10))
    watch = DeadlineWatch(held.envelopes, clock=held.clock)
    assert watch.run_once() == (0, 0)
    with pytest.raises(Exception, match="nobody to remind"):
        held.envelopes.remind(held.organisation_id, envelope_id, held.sender_id)
