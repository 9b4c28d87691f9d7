"""Appending recorded steps to storage's ledger, in the order they happened.

A background thread of each portal process.  A row is appended with its own id as
the ledger's event id, so an append whose answer was lost (a crash, a timeout) is
simply sent again and lands on the leaf it already made; storage down means the
rows wait, and the steps themselves go on (the ledger catches up, in order).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from signet.common.clients import StorageClient
from signet.common.contracts.storage import LedgerEventIn
from signet.common.errors import SignetError
from signet.portal.evidence.models import LedgerEvent
from signet.portal.schema import utc_now
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

#: Rows appended per pass (a pass ends early at the first failure: order matters).
_BATCH = 100


def _event(row: LedgerEvent) -> LedgerEventIn:
    fields: dict[str, object] = {
        "event_type": row.event_type,
        "envelope_id": row.envelope_id,
        "actor": row.actor,
        "ip": row.ip,
        "user_agent": row.user_agent,
        "document_hashes": row.document_hashes,
        "auth_method": row.auth_method,
        "details": row.details | {"portal_event_id": row.id},
    }
    if "event_id" in LedgerEventIn.model_fields:  # storage's idempotent appends
        fields["event_id"] = row.id
    return LedgerEventIn.model_validate(fields)


def drain_once(sessions: sessionmaker[Session], storage: StorageClient) -> int:
    """Append what is waiting, oldest first; the number appended."""
    appended = 0
    with sessions() as session:
        waiting = list(
            session.scalars(
                select(LedgerEvent)
                .where(LedgerEvent.ledger_index.is_(None))
                .order_by(LedgerEvent.sequence, LedgerEvent.created_at)
                .limit(_BATCH)
            )
        )
    for row in waiting:
        try:
            receipt = storage.append(_event(row))
        except (SignetError, ValueError) as exc:
            with sessions.begin() as session:
                failed = session.get(LedgerEvent, row.id)
                if failed is not None:
                    failed.attempts += 1
                    failed.last_error = str(exc)[:1000]
            log.warning("ledger append of %s waits: %s", row.event_type, exc)
            break
        with sessions.begin() as session:
            done = session.get(LedgerEvent, row.id)
            if done is not None:
                done.ledger_index, done.leaf_hash = receipt.index, receipt.leaf_hash
                done.appended_at = utc_now()
        appended += 1
    return appended


class LedgerDrain:
    """The thread that runs `drain_once` every `interval` seconds, and at once when told."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        storage: StorageClient,
        *,
        interval: float = 1.0,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.sessions, self.storage, self.interval = sessions, storage, interval
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-drain", daemon=True)
        self._on_error = on_error

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                drain_once(self.sessions, self.storage)
            except Exception as exc:  # the thread must outlive a database hiccup
                log.exception("ledger drain pass failed")
                if self._on_error is not None:
                    self._on_error(exc)
            self._wake.wait(self.interval)
            self._wake.clear()
