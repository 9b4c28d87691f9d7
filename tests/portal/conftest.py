"""Portal fixtures: a migrated SQLite portal database with one organisation and sender,
the envelope and identity services, and the outbox's dispatcher (SMTP on a free port;
tests start the real aiosmtpd there when they want a server to answer)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from signet.common.contracts.appliance import SigningPolicySpec
from signet.common.notify import Channel
from signet.common.notify.smtp import SmtpSettings, SmtpTransport
from signet.common.policies import LoadedPolicy
from signet.portal import models
from signet.portal.database import open_portal_database
from signet.portal.envelopes.addressing import current_link_token
from signet.portal.envelopes.contracts import EnvelopeCreate
from signet.portal.envelopes.service import EnvelopeService, PortalKeys, StoredDocument
from signet.portal.identity.service import IdentityService
from signet.portal.notifications.dispatch import Dispatcher
from sqlalchemy.orm import sessionmaker

from tests.conftest import free_port

POLICY = LoadedPolicy("default", 1, SigningPolicySpec(), "ab" * 32, "test")
DOC = StoredDocument("contract.pdf", "cd" * 32, 1234, 2)
KEYS = PortalKeys(b"l" * 32, b"c" * 32)


class Clock:
    """The real time, moved forward by the test (the outbox stamps rows with the real
    time, so a clock standing still would fall behind them)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by

    def advance_to(self, moment: datetime) -> None:
        self.offset += moment - self() + timedelta(milliseconds=1)


@dataclass
class World:
    envelopes: EnvelopeService
    identity: IdentityService
    dispatcher: Dispatcher
    clock: Clock
    organisation_id: str
    sender_id: str
    port: int

    def envelope(self, approver: str) -> str:
        story = EnvelopeCreate.model_validate(
            {
                "title": "采购合同 / Contrato",
                "recipients": [
                    {"name": "Approver", "email": approver, "role": "approver"},
                    {"name": "María", "mobile": "+34600000000", "group": 1, "locale": "es"},
                ],
            }
        )
        envelope_id = self.envelopes.create(self.organisation_id, self.sender_id, story, [DOC])
        self.envelopes.send(self.organisation_id, envelope_id, self.sender_id)
        return envelope_id

    def outbox(self, envelope_id: str) -> list[models.OutboxMessage]:
        with self.envelopes.sessions() as session:
            return list(
                session.scalars(
                    sa.select(models.OutboxMessage)
                    .where(models.OutboxMessage.envelope_id == envelope_id)
                    .order_by(models.OutboxMessage.created_at)
                )
            )


@pytest.fixture
def portal_world(tmp_path: Path) -> Iterator[World]:
    database = open_portal_database(f"sqlite:///{tmp_path / 'portal.db'}")
    sessions = sessionmaker(database.engine, expire_on_commit=False)
    with sessions.begin() as session:
        org = models.Organisation(name="Acme")
        session.add(org)
        session.flush()
        sender = models.User(organisation_id=org.id, email="li@acme.example", name="Li Wei")
        session.add(sender)
        session.flush()
        org_id, sender_id = org.id, sender.id
    clock, port = Clock(), free_port()
    envelopes = EnvelopeService(
        sessions, lambda _: POLICY, KEYS, portal_url="https://portal.acme.example",
        held=False, clock=clock,
    )  # fmt: skip
    smtp = SmtpSettings(host="127.0.0.1", port=port, security="none", sender="signet@acme.example")
    dispatcher = Dispatcher(
        sessions,
        {Channel.EMAIL: SmtpTransport(smtp)},
        lambda session, recipient_id: current_link_token(session, KEYS.link_key, recipient_id),
        clock=clock,
    )
    identity = IdentityService(envelopes, deliver=dispatcher.deliver_now)
    yield World(envelopes, identity, dispatcher, clock, org_id, sender_id, port)
    database.engine.dispose()


# the tuple-shaped world of the service-level tests, for the modules that share it
from tests.portal.test_envelope_service import world  # noqa: E402

__all__ = ["DOC", "KEYS", "POLICY", "Clock", "World", "portal_world", "world"]
