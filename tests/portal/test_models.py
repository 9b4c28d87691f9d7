"""The portal's schema: every aggregate's tables, UTC timestamps, lost updates refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from signet.portal import models
from signet.portal.envelopes.routing import EnvelopeStatus
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError


@pytest.fixture
def sessions(tmp_path: object) -> Iterator[sessionmaker[Session]]:
    engine = sa.create_engine("sqlite://")
    models.Base.metadata.create_all(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def _envelope(session: Session) -> models.Envelope:
    org = models.Organisation(name="Acme")
    session.add(org)
    session.flush()
    sender = models.User(organisation_id=org.id, email="s@acme.example", name="Sender")
    session.add(sender)
    session.flush()
    envelope = models.Envelope(
        organisation_id=org.id,
        sender_id=sender.id,
        title="Contract",
        status=EnvelopeStatus.DRAFT.value,
        policy_name="default",
        policy_version=1,
        policy_sha256="0" * 64,
    )
    session.add(envelope)
    session.flush()
    return envelope


def test_timestamps_are_utc_and_naive_ones_refused(sessions: sessionmaker[Session]) -> None:
    beijing = timezone(timedelta(hours=8))
    with sessions.begin() as session:
        envelope = _envelope(session)
        envelope.deadline = datetime(2027, 1, 1, 18, 0, tzinfo=beijing)
        envelope_id = envelope.id
    with sessions() as session:
        stored = session.get(models.Envelope, envelope_id)
        assert stored is not None and stored.deadline is not None
        assert stored.deadline == datetime(2027, 1, 1, 10, 0, tzinfo=UTC)
        assert stored.deadline.tzinfo is UTC
    with pytest.raises(StatementError, match="time zone"), sessions.begin() as session:
        session.add(models.Organisation(name="Naive", created_at=datetime(2026, 1, 1)))


def test_a_concurrent_change_fails_instead_of_being_lost(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        envelope_id = _envelope(session).id
    first, second = sessions(), sessions()
    a = first.get(models.Envelope, envelope_id)
    b = second.get(models.Envelope, envelope_id)
    assert a is not None and b is not None
    a.status = EnvelopeStatus.SENT.value
    first.commit()
    b.status = EnvelopeStatus.VOIDED.value
    with pytest.raises(StaleDataError):
        second.commit()
    first.close()
    second.close()


def test_one_idempotency_key_per_organisation(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        envelope = _envelope(session)
        envelope.idempotency_key = "k1"
        org, sender = envelope.organisation_id, envelope.sender_id
    with pytest.raises(sa.exc.IntegrityError), sessions.begin() as session:
        session.add(
            models.Envelope(
                organisation_id=org,
                sender_id=sender,
                title="again",
                status="draft",
                policy_name="default",
                policy_version=1,
                policy_sha256="0" * 64,
                idempotency_key="k1",
            )
        )
