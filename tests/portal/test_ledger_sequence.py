"""On PostgreSQL two steps committed at the same time still get distinct, ordered
sequence numbers: each transaction reads max()+1, which without a lock both read the
same (neither sees the other's uncommitted row)."""

from __future__ import annotations

import threading
import time

from signet.portal import models
from signet.portal.database import open_portal_database
from signet.portal.evidence.record import record_event
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from tests.support.postgres import start_postgres


def test_concurrent_steps_get_distinct_sequences_on_postgresql() -> None:
    server = start_postgres()
    try:
        database = open_portal_database(server.create_database("sequence"))
        sessions = sessionmaker(database.engine, expire_on_commit=False)
        with sessions.begin() as session:
            org = models.Organisation(name="Acme")
            session.add(org)
            session.flush()
            sender = models.User(organisation_id=org.id, email="s@acme.example", name="S")
            session.add(sender)
            session.flush()
            envelopes = []
            for n in range(2):
                envelope = models.Envelope(
                    organisation_id=org.id, sender_id=sender.id, title=f"E{n}",
                    status="sent", policy_name="default", policy_version=1,
                    policy_sha256="0" * 64,
                )  # fmt: skip
                session.add(envelope)
                session.flush()
                envelopes.append(envelope.id)
        start = threading.Barrier(2)

        def step(envelope_id: str) -> None:
            with sessions.begin() as session:
                start.wait()
                record_event(session, envelope_id, "recipient.signed", "test")
                time.sleep(0.3)  # both transactions open at once

        threads = [threading.Thread(target=step, args=(e,)) for e in envelopes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        with sessions() as session:
            sequences = list(session.scalars(select(models.LedgerEvent.sequence)))
        assert sorted(sequences) == [1, 2], sequences
        database.engine.dispose()
    finally:
        server.stop()
