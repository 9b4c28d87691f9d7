"""The portal's outbox delivered through a real SMTP server (aiosmtpd on loopback).

The peers' shared bug is what is asserted: a message is `accepted` only when the
server took it, a refusal keeps the server's reason, a server that is down is tried
again with back-off and then given up on, never "sent".  With a gateway no usable
link or code is ever stored: the link is derived again when the message leaves, the
code is sent once from memory.  The database is migrated by the portal's own
migrations (SQLite), as `signet up` opens it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import EmailMessage

import pytest
import sqlalchemy as sa
from signet.common.notify.messages import MASK, MAX_ATTEMPTS
from signet.portal import models
from signet.portal.envelopes.addressing import current_link_token
from signet.portal.envelopes.contracts import EnvelopeCreate
from signet.portal.identity.service import IdentityService
from signet.portal.notifications.dispatch import ResendRefused

from tests.portal.conftest import DOC, KEYS, World
from tests.support.mail import smtp_server


@pytest.fixture
def world(portal_world: World) -> World:
    """This module's world: the migrated portal with its dispatcher (tests/portal/conftest)."""
    return portal_world


def _text(mail: EmailMessage) -> str:
    return str(mail.get_content())


def test_a_link_leaves_by_mail_working_and_the_outbox_keeps_it_masked(world: World) -> None:
    envelope_id = world.envelope("boss@acme.example")
    (queued,) = world.outbox(envelope_id)
    assert queued.state == "queued" and "/s/" + MASK in queued.body
    with smtp_server(world.port) as box:
        assert world.dispatcher.run_due() == 1
    (mail,) = box.messages
    token = re.search(r"/s/([A-Za-z0-9_-]{43})", _text(mail))
    assert token, _text(mail)
    assert world.envelopes.open(token.group(1)).blocked is None  # the link works
    (row,) = world.outbox(envelope_id)
    assert row.state == "accepted" and row.attempts == 1
    assert row.provider_id == mail["Message-ID"]
    assert token.group(1) not in row.body and "/s/" + MASK in row.body
    assert world.dispatcher.run_due() == 0  # sent once


def test_the_identity_code_is_sent_at_once_and_never_stored(world: World) -> None:
    envelope_id = world.envelope("boss@acme.example")
    with smtp_server(world.port) as box:
        world.dispatcher.run_due()
        token = re.search(r"/s/([A-Za-z0-9_-]{43})", _text(box.messages[0]))
        assert token
        world.identity.request_code(token.group(1))
        code_mail = box.messages[1]  # sent before request_code returned
    code = re.search(r"\b(\d{6})\b", _text(code_mail))
    assert code, _text(code_mail)
    row = world.outbox(envelope_id)[-1]
    assert row.notice == "identity_code" and row.state == "accepted"
    assert code.group(1) not in row.body and MASK in row.body
    world.identity.verify(token.group(1), code.group(1))  # the mailed code is the real one


def test_a_refusal_fails_at_once_with_the_servers_reason(world: World) -> None:
    envelope_id = world.envelope("refused@example.com")
    with smtp_server(world.port):
        world.dispatcher.run_due()
        (row,) = world.outbox(envelope_id)
        assert row.state == "failed" and row.attempts == 1
        assert row.detail == "550 5.1.1 <refused@example.com>: mailbox unavailable"
        world.clock.advance(timedelta(days=1))
        assert world.dispatcher.run_due() == 0  # permanent: not tried again


def test_a_server_that_is_down_is_retried_with_back_off_then_given_up(world: World) -> None:
    envelope_id = world.envelope("boss@acme.example")  # no server listens on the port
    world.dispatcher.run_due()
    (row,) = world.outbox(envelope_id)
    assert row.state == "queued" and row.attempts == 1
    assert row.detail.startswith(f"attempt 1 of {MAX_ATTEMPTS} failed: ")
    assert row.next_attempt_at is not None and row.next_attempt_at > world.clock()
    assert world.dispatcher.run_due() == 0  # not due yet
    waits = []
    for _ in range(MAX_ATTEMPTS - 1):
        (row,) = world.outbox(envelope_id)
        assert row.next_attempt_at is not None
        waits.append(row.next_attempt_at - world.clock())
        world.clock.advance_to(row.next_attempt_at)
        assert world.dispatcher.run_due() == 1
    (row,) = world.outbox(envelope_id)
    assert row.state == "failed" and row.attempts == MAX_ATTEMPTS
    assert row.detail.startswith(f"gave up after {MAX_ATTEMPTS} attempts: ")
    assert waits[-1] > waits[0]  # backing off
    # an admin resends once the server is back: accepted, with the link working
    world.dispatcher.resend(row.id, world.organisation_id)
    with smtp_server(world.port) as box:
        assert world.dispatcher.run_due() == 1
    assert world.outbox(envelope_id)[0].state == "accepted" and len(box.messages) == 1
    with pytest.raises(ResendRefused, match="only a failed message"):
        world.dispatcher.resend(row.id, world.organisation_id)
    assert world.dispatcher.resend(row.id, "another-organisation") is None


def test_a_code_that_cannot_be_sent_is_failed_not_retried(world: World) -> None:
    envelope_id = world.envelope("boss@acme.example")
    with smtp_server(world.port) as box:
        world.dispatcher.run_due()
        token = re.search(r"/s/([A-Za-z0-9_-]{43})", _text(box.messages[0]))
    assert token
    world.identity.request_code(token.group(1))  # the server is gone now
    row = world.outbox(envelope_id)[-1]
    assert row.state == "failed" and row.detail.endswith("not retried: ask for a new code")
    with pytest.raises(ResendRefused, match="one-time code"):
        world.dispatcher.resend(row.id, world.organisation_id)


def test_what_a_dead_portal_left_behind_is_finished(world: World) -> None:
    """A code recorded but never handed over (the process died after the commit) is
    failed once its life is over; a message left `sending` is taken again."""
    envelope_id = world.envelope("boss@acme.example")
    token = current_link_token_of(world, envelope_id)
    quiet = IdentityService(world.envelopes)  # records the code, sends nothing
    quiet.request_code(token)
    with world.envelopes.sessions.begin() as session:
        link_row = session.scalars(
            sa.select(models.OutboxMessage).where(models.OutboxMessage.notice == "your_turn")
        ).one()
        link_row.state, link_row.claimed_at = "sending", world.clock()
    world.clock.advance(timedelta(minutes=6))
    with smtp_server(world.port) as box:
        world.dispatcher.run_due()
    states = {m.notice: (m.state, m.detail) for m in world.outbox(envelope_id)}
    assert states["your_turn"][0] == "accepted" and len(box.messages) == 1
    assert states["identity_code"][0] == "failed"
    assert "before the code expired" in states["identity_code"][1]


def test_a_channel_without_a_gateway_fails_its_messages_saying_so(world: World) -> None:
    story = EnvelopeCreate.model_validate(
        {"title": "SMS only", "recipients": [{"name": "María", "mobile": "+34600000000"}]}
    )
    envelope_id = world.envelopes.create(world.organisation_id, world.sender_id, story, [DOC])
    world.envelopes.send(world.organisation_id, envelope_id, world.sender_id)
    world.dispatcher.run_due()
    (row,) = world.outbox(envelope_id)
    assert row.state == "failed" and row.detail == "no sms gateway is configured"


def test_a_replaced_link_is_not_sent(world: World) -> None:
    envelope_id = world.envelope("boss@acme.example")
    with world.envelopes.sessions.begin() as session:
        recipient = session.scalars(
            sa.select(models.Recipient).where(models.Recipient.envelope_id == envelope_id)
        ).first()
        assert recipient is not None
        recipient.link_generation += 1  # a newer link was issued meanwhile
    world.dispatcher.run_due()
    (row,) = world.outbox(envelope_id)
    assert row.state == "failed" and "no longer valid" in row.detail


def current_link_token_of(world: World, envelope_id: str) -> str:
    with world.envelopes.sessions() as session:
        recipient = session.scalars(
            sa.select(models.Recipient).where(
                models.Recipient.envelope_id == envelope_id,
                models.Recipient.link_hash.is_not(None),
            )
        ).one()
        token = current_link_token(session, KEYS.link_key, recipient.id)
    assert token is not None
    return token
