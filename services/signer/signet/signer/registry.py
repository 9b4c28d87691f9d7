"""The signer's own state: issued certificates, revocations, and monotonic counters.

SQLite in the embedded default, PostgreSQL in a cluster (same SQLAlchemy code).  A
`Registry` works on an opened database: `signet.signer.database.open_registry` opens
one (engine, pragmas, migrate-on-open under a lock), a module above both this one and
the migrations, so that the wings using the registry (the CA, the TSA) import neither
the migrations nor, through them, another wing's tables.  The tables are in
`signet.signer.schema`.  Certificates are never deleted: a revoked or expired
certificate must still be answerable by OCSP/CRL and shown by validation years later.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from signet.common.contracts.signer import CertificateKind
from signet.common.database import Database
from signet.signer.schema import CertificateRecord, Counter, aware
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

__all__ = ["CertificateRecord", "Counter", "Registry", "verification_json"]


class Registry:
    """Certificates and counters in an opened signer database (whose sessions the batch
    queue shares: one database, one schema)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine: Engine = database.engine

    def session(self) -> Session:
        return self.database.session()

    def undurable_session(self) -> Session:
        """A session whose commits do not wait for the disk: for writes that a crash may
        undo harmlessly (a batch claim: lost, its items are simply pending again); see
        `signet.common.database.Database.undurable_session`."""
        return self.database.undurable_session()

    def add(self, record: CertificateRecord) -> None:
        with self.session() as session, session.begin():
            session.add(record)

    def get(self, serial: str) -> CertificateRecord | None:
        with self.session() as session:
            record = session.get(CertificateRecord, serial)
            return _normalise(record) if record else None

    def latest(self, kind: CertificateKind) -> CertificateRecord | None:
        with self.session() as session:
            record = session.scalars(
                select(CertificateRecord)
                .where(CertificateRecord.kind == kind.value)
                .order_by(CertificateRecord.created_at.desc())
                .limit(1)
            ).first()
            return _normalise(record) if record else None

    def latest_for_key(self, key_label: str) -> CertificateRecord | None:
        with self.session() as session:
            record = session.scalars(
                select(CertificateRecord)
                .where(CertificateRecord.key_label == key_label)
                .order_by(CertificateRecord.created_at.desc())
                .limit(1)
            ).first()
            return _normalise(record) if record else None

    def current_seals(self) -> list[CertificateRecord]:
        """The newest unrevoked certificate of every seal key (what the operator watches
        for expiry: an organisation seal that lapses stops every automatic sealing)."""
        with self.session() as session:
            rows = session.scalars(
                select(CertificateRecord)
                .where(
                    CertificateRecord.kind == CertificateKind.SEAL.value,
                    CertificateRecord.revoked_at.is_(None),
                )
                .order_by(CertificateRecord.created_at)
            ).all()
        newest = {record.key_label: record for record in rows}  # later rows win
        return [_normalise(record) for _, record in sorted(newest.items())]

    def revoked_by(self, issuer_serial: str) -> list[CertificateRecord]:
        with self.session() as session:
            rows = session.scalars(
                select(CertificateRecord).where(
                    CertificateRecord.issuer_serial == issuer_serial,
                    CertificateRecord.revoked_at.is_not(None),
                )
            ).all()
            return [_normalise(r) for r in rows]

    def revoke(self, serial: str, reason: str, when: datetime) -> bool:
        """Mark revoked; False if it already was (revocation is final)."""
        with self.session() as session, session.begin():
            result = session.execute(
                update(CertificateRecord)
                .where(CertificateRecord.serial == serial, CertificateRecord.revoked_at.is_(None))
                .values(revoked_at=when, revocation_reason=reason)
            )
            return bool(getattr(result, "rowcount", 0))

    def mark_key_destroyed(self, serial: str, when: datetime) -> None:
        with self.session() as session, session.begin():
            session.execute(
                update(CertificateRecord)
                .where(CertificateRecord.serial == serial)
                .values(key_destroyed_at=when)
            )

    def reserve(self, name: str, count: int, *, floor: int = 0) -> int:
        """Atomically reserve `count` values of counter `name`; returns the first.

        Values are never handed out twice, across processes and restarts; `floor`
        lets a counter start at a time-derived value.
        """
        # One UPDATE … RETURNING is atomic on SQLite (>= 3.35) and PostgreSQL alike,
        # where a read-then-write would race between worker processes.
        with self.session() as session, session.begin():
            session.execute(
                text(
                    "INSERT INTO counters (name, value) VALUES (:name, :floor) "
                    "ON CONFLICT (name) DO NOTHING"
                ),
                {"name": name, "floor": floor},
            )
            end = session.execute(
                text(
                    "UPDATE counters SET value = "
                    "CASE WHEN value > :floor THEN value ELSE :floor END + :count "
                    "WHERE name = :name RETURNING value"
                ),
                {"name": name, "floor": floor, "count": count},
            ).scalar_one()
            return int(end) - count


def _normalise(record: CertificateRecord) -> CertificateRecord:
    for attr in ("not_before", "not_after", "created_at", "revoked_at", "key_destroyed_at"):
        setattr(record, attr, aware(getattr(record, attr)))
    return record


def verification_json(data: dict[str, Any] | None) -> str | None:
    return json.dumps(data, sort_keys=True, default=str) if data else None
