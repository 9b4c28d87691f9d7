"""The signer's own state: issued certificates, revocations, and monotonic counters.

SQLite in the embedded default, PostgreSQL in a cluster (same SQLAlchemy code).
The schema is Alembic's (`signet.signer.migrations`): opening the registry
migrates the database to the revision this code expects, under a lock, so the
models here and in `signet.signer.batch.queue` change only together with a revision.
Certificates are never deleted: a revoked or expired certificate must still be
answerable by OCSP/CRL and shown by validation years later.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from signet.common.contracts.signer import CertificateKind
from signet.signer import migrations
from sqlalchemy import (
    DateTime,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class Base(DeclarativeBase):
    """Every table of the signer database (certificates, counters, batches)."""


class CertificateRecord(Base):
    __tablename__ = "certificates"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    subject: Mapped[str] = mapped_column(Text)
    issuer_serial: Mapped[str | None] = mapped_column(String(64))
    key_label: Mapped[str] = mapped_column(String(64), index=True)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    key_destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    identity_verification: Mapped[str | None] = mapped_column(Text)


class Counter(Base):
    """Named monotonic counters (TSA serial blocks, CRL numbers)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column()


def _aware(value: datetime | None) -> datetime | None:
    # SQLite drops tzinfo; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Registry:
    def __init__(self, url: str) -> None:
        # A network database can drop idle connections: ping on checkout.  A file
        # database cannot, and the ping would cost a round trip on every query.
        self.engine: Engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        migrations.upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._url = url
        self._undurable: sessionmaker[Session] | None = None

    @classmethod
    def sqlite(cls, path: Path) -> Registry:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}")

    def session(self) -> Session:
        return self._sessions()

    def undurable_session(self) -> Session:
        """A session whose commits do not wait for the disk: for writes that a crash may
        undo harmlessly (a batch claim: lost, its items are simply pending again).

        Its own connections: SQLite with ``synchronous=NORMAL`` (in WAL mode still
        atomic and consistent; the next durable commit's fsync of the WAL covers it),
        PostgreSQL with ``synchronous_commit=off`` (the same promise).  Every other
        session stays fully durable.
        """
        if self._undurable is None:
            if self._url.startswith("sqlite"):
                engine = create_engine(self._url)
                event.listen(engine, "connect", _sqlite_pragmas)
                event.listen(engine, "connect", _sqlite_undurable)
            elif self._url.startswith("postgresql"):
                engine = create_engine(
                    self._url,
                    pool_pre_ping=True,
                    connect_args={"options": "-c synchronous_commit=off"},
                )
            else:
                engine = self.engine
            self._undurable = sessionmaker(engine, expire_on_commit=False)
        return self._undurable()

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
        setattr(record, attr, _aware(getattr(record, attr)))
    return record


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
    cursor.close()


def _sqlite_undurable(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def verification_json(data: dict[str, Any] | None) -> str | None:
    return json.dumps(data, sort_keys=True, default=str) if data else None
