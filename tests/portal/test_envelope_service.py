"""The envelope service on SQLite: create, send, links in turn, identity codes, decline.

What the peers got wrong is what is asserted: a link opened out of turn acts on
nothing, five wrong codes lock and tell the sender, no usable secret is stored once
a real gateway carries the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from signet.common.contracts.appliance import SigningPolicySpec
from signet.common.errors import Forbidden, NotFound
from signet.common.policies import LoadedPolicy
from signet.portal import models
from signet.portal.envelopes.contracts import EnvelopeCreate
from signet.portal.envelopes.service import (
    EnvelopeService,
    LinkInvalid,
    PortalKeys,
    RoutingRefused,
    StoredDocument,
)
from signet.portal.identity.service import CodeRefused, IdentityService
from signet.portal.links import link_token
from sqlalchemy.orm import sessionmaker

POLICY = LoadedPolicy("default", 3, SigningPolicySpec(), "ab" * 32, "test")
DOC = StoredDocument("contract.pdf", "cd" * 32, 1234, 2)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world() -> Iterator[tuple[EnvelopeService, IdentityService, Clock, str, str]]:
    engine = sa.create_engine("sqlite://")
    models.Base.metadata.create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions.begin() as session:
        org = models.Organisation(name="Acme")
        session.add(org)
        session.flush()
        sender = models.User(organisation_id=org.id, email="li@acme.example", name="Li Wei")
        session.add(sender)
        session.flush()
        org_id, sender_id = org.id, sender.id
    clock = Clock()
    envelopes = EnvelopeService(
        sessions,
        lambda _: POLICY,
        PortalKeys(b"l" * 32, b"c" * 32),
        portal_url="https://portal.acme.example",
        held=True,
        clock=clock,
    )
    yield envelopes, IdentityService(envelopes), clock, org_id, sender_id
    engine.dispose()


def _story() -> EnvelopeCreate:
    return EnvelopeCreate.model_validate(
        {
            "title": "采购合同",
            "message": "Please sign",
            "recipients": [
                {"name": "Approver", "email": "boss@acme.example", "role": "approver"},
                {"name": "María", "mobile": "+34600000000", "group": 1, "locale": "es"},
                {"name": "Partner", "email": "p@partner.example", "group": 1},
            ],
            "fields": [
                {"document": 0, "recipient": 1, "kind": "signature", "page": 2,
                 "x": 50, "y": 50, "width": 150, "height": 50},
            ],
        }
    )  # fmt: skip


def _outbox(service: EnvelopeService) -> list[models.OutboxMessage]:
    with service.sessions() as session:
        return list(session.scalars(sa.select(models.OutboxMessage).order_by("created_at")))


def _token(message: models.OutboxMessage) -> str:
    found = re.search(r"/s/([A-Za-z0-9_-]{43})", message.body)
    assert found, message.body
    return found.group(1)


def test_send_notifies_the_first_group_only_with_a_link_that_opens(world: tuple) -> None:  # type: ignore[type-arg]
    envelopes, _, _, org, sender = world
    envelope_id = envelopes.create(org, sender, _story(), [DOC])
    envelopes.send(org, envelope_id, sender)
    (message,) = _outbox(envelopes)
    assert message.to == "boss@acme.example" and message.state == "held"
    assert message.subject == "Li Wei asks you to sign “采购合同”"
    view = envelopes.open(_token(message))
    assert view.envelope_id == envelope_id and view.blocked is None
    assert view.envelope_status == "sent" and not view.identity_verified
    with pytest.raises(RoutingRefused) as again:
        envelopes.send(org, envelope_id, sender)
    assert again.value.code == "not_a_draft"


def test_organisations_never_see_each_others_envelopes(world: tuple) -> None:  # type: ignore[type-arg]
    envelopes, _, _, org, sender = world
    envelope_id = envelopes.create(org, sender, _story(), [DOC])
    with pytest.raises(NotFound):
        envelopes.send("another-organisation", envelope_id, sender)


def test_one_idempotency_key_one_envelope(world: tuple) -> None:  # type: ignore[type-arg]
    envelopes, _, _, org, sender = world
    first = envelopes.create(org, sender, _story(), [DOC], idempotency_key="k")
    assert envelopes.create(org, sender, _story(), [DOC], idempotency_key="k") == first
    assert envelopes.create(org, sender, _story(), [DOC], idempotency_key="other") != first


def test_unknown_and_expired_links(world: tuple) -> None:  # type: ignore[type-arg]
    envelopes, _, clock, org, sender = world
    envelopes.send(org, envelopes.create(org, sender, _story(), [DOC]), sender)
    token = _token(_outbox(envelopes)[0])
    with pytest.raises(LinkInvalid):
        envelopes.open("A" * 43)
    clock.now += timedelta(days=POLICY.spec.link_validity_days)
    with pytest.raises(LinkInvalid, match="expired"):
        envelopes.open(token)


def test_identity_code_then_decline_stops_the_envelope(world: tuple) -> None:  # type: ignore[type-arg]
    envelopes, identity, _, org, sender = world
    envelope_id = envelopes.create(org, sender, _story(), [DOC])
    envelopes.send(org, envelope_id, sender)
    token = _token(_outbox(envelopes)[0])
    with pytest.raises(Forbidden, match="identity"):
        envelopes.decline(token, "wrong price")
    sent = identity.request_code(token)
    assert sent.to == "b***@acme.example"
    code = re.search(r"\b(\d{6})\b", _outbox(envelopes)[-1].body)
    assert code is not None
    identity.verify(token, code.group(1))
    assert envelopes.open(token).identity_verified
    envelopes.decline(token, "wrong price")
    view = envelopes.open(token)
    assert view.envelope_status == "declined" and view.blocked == "envelope_not_open"
    last = _outbox(envelopes)[-1]
    assert last.notice == "declined" and "wrong price" in last.body


def test_five_wrong_codes_lock_the_link_and_tell_the_sender(world: tuple) -> None:  # type: ignore[type-arg]
    envelopes, identity, _, org, sender = world
    envelopes.send(org, envelopes.create(org, sender, _story(), [DOC]), sender)
    token = _token(_outbox(envelopes)[0])
    identity.request_code(token)
    code = re.search(r"\b(\d{6})\b", _outbox(envelopes)[-1].body)
    assert code is not None
    wrong = "000000" if code.group(1) != "000000" else "111111"
    codes = []
    for _ in range(5):
        with pytest.raises(CodeRefused) as refused:
            identity.verify(token, wrong)
        codes.append(refused.value.code)
    assert codes == ["code_wrong"] * 4 + ["code_locked"]
    with pytest.raises(CodeRefused, match="locked"):
        identity.verify(token, code.group(1))  # even the right code, once locked
    with pytest.raises(Forbidden, match="locked"):
        identity.request_code(token)
    told = _outbox(envelopes)[-1]
    assert told.notice == "locked" and told.to == "li@acme.example"
    assert "Approver" in told.body


def test_a_finished_recipients_link_acts_on_nothing_more(world: tuple) -> None:  # type: ignore[type-arg]
    """A link is bound to one recipient: voided, it shows the envelope's state."""
    envelopes, _, _, org, sender = world
    envelope_id = envelopes.create(org, sender, _story(), [DOC])
    envelopes.send(org, envelope_id, sender)
    token = _token(_outbox(envelopes)[0])
    envelopes.void(org, envelope_id, sender)
    assert envelopes.open(token).blocked == "envelope_not_open"
    assert _outbox(envelopes)[-1].notice == "voided"


def test_with_a_gateway_no_link_or_code_is_stored(world: tuple) -> None:  # type: ignore[type-arg]
    envelopes, _, _, org, sender = world
    gateway = EnvelopeService(
        envelopes.sessions, envelopes.policy, envelopes.keys,
        portal_url=envelopes.portal_url, held=False, clock=envelopes.clock,
    )  # fmt: skip
    gateway.send(org, gateway.create(org, sender, _story(), [DOC]), sender)
    (message,) = _outbox(gateway)
    assert message.state == "queued"
    assert "/s/••••••" in message.body and not re.search(r"/s/[A-Za-z0-9_-]{43}", message.body)
    identity = IdentityService(gateway)
    with gateway.sessions() as session:
        recipient = session.scalars(
            sa.select(models.Recipient).where(models.Recipient.link_hash.is_not(None))
        ).one()
    token = link_token(gateway.keys.link_key, recipient.id, recipient.link_generation)
    identity.request_code(token)
    assert not re.search(r"\b\d{6}\b", _outbox(gateway)[-1].body)
