"""Recording a step: a `LedgerEvent` row in the caller's transaction.

Recorded with the state change it describes, so the ledger never shows a step that
was rolled back, and a step that happened is never missing from it: the drain
(`signet.portal.evidence.drain`) appends rows in order once they are committed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from signet.portal.evidence.models import LedgerEvent
from signet.portal.schema import utc_now
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Origin:
    """Where a request came from, as evidence (the ledger keeps it for decades)."""

    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def of(cls, ip: str | None, user_agent: str | None) -> Origin:
        agent = _UNPRINTABLE.sub("", user_agent)[:256] if user_agent else None
        return cls(ip if ip and re.fullmatch(r"[A-Za-z0-9.:%-]{1,64}", ip) else None, agent)


NOWHERE = Origin()

#: The PostgreSQL advisory lock that orders the portal's steps (the migration lock is
#: another key: `signet.portal.database`).
SEQUENCE_LOCK = 0x5349474E_5345515F  # "SIGNSEQ_"


def record_event(
    session: Session,
    envelope_id: str,
    event_type: str,
    actor: str,
    origin: Origin = NOWHERE,
    *,
    document_hashes: Sequence[str] = (),
    auth_method: str | None = None,
    details: Mapping[str, str] | None = None,
) -> LedgerEvent:
    if session.get_bind().dialect.name == "postgresql":
        # two transactions would read the same max() and both take it: the numbering is
        # serialised until this one commits (SQLite has one writer at a time anyway)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEQUENCE_LOCK})
    last = session.scalar(select(func.max(LedgerEvent.sequence))) or 0
    row = LedgerEvent(
        sequence=last + 1,
        envelope_id=envelope_id,
        event_type=event_type,
        actor=_UNPRINTABLE.sub("", actor)[:254] or "unknown",
        ip=origin.ip,
        user_agent=origin.user_agent,
        auth_method=auth_method,
        document_hashes=list(document_hashes),
        details={k: _UNPRINTABLE.sub("", v)[:1000] for k, v in (details or {}).items()},
        created_at=utc_now(),
    )
    session.add(row)
    return row
