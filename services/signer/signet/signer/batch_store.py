"""Is the batch directory the one the database's batches were written to?

Batch rows live in the database and their documents in a directory (in a
cluster, a volume the operator claims).  The two can part: a pod restarting
on an emptyDir, a volume not mounted, another Appliance's claim, a restore of
one without the other.  The rows would then say "done" about documents that
are not there, and a worker would even "fail" pending documents whose uploads
it cannot find.  So the directory carries a marker (`MARKER`: a random store
id) and the database records that id on first use; a signer serves batches
only while the two agree, and says why otherwise (readiness `batch_store`,
which the operator turns into the condition `BatchStoreReady`, and a 503 on
every batch endpoint).

First use, decided when the process opens the store:

- no batch rows: nothing can be lost, so a missing or different marker is
  (re)initialised and recorded;
- batch rows but no recorded id (they predate this guard): the directory is
  adopted if it holds the folder of one of the newest batches, else it is
  missing (or another store's, if marked);
- a recorded id: the marker must carry it.

An admin who knows the documents are gone (or restored them by hand) accepts
the directory with `adopt` (``signet signer batch-store adopt``); nothing here
deletes or rewrites a batch's files.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from signet.common.errors import ServiceUnavailable
from signet.signer.batch_queue import BatchRecord
from signet.signer.durable import fsync_directory
from signet.signer.registry import Base, Registry
from sqlalchemy import DateTime, String, Text, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

__all__ = [
    "MARKER",
    "BatchStoreGuard",
    "BatchStoreRecord",
    "BatchStoreUnavailable",
    "StoreHealth",
    "StoreState",
]

log = logging.getLogger(__name__)

#: The marker file in the batch directory (JSON: ``store_id``, ``created_at``).
MARKER = ".signet-batch-store"
#: The one row of `BatchStoreRecord` (a fixed key: two replicas initialising a fresh
#: store at once insert the same key, and the second one reads the first one's id).
_ROW = "batches"
#: How many of the newest batches are looked for when adopting an unmarked directory.
_ADOPT_SAMPLE = 20


class BatchStoreRecord(Base):
    """The store id the batch rows belong to, recorded when the directory was first used."""

    __tablename__ = "batch_store"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(64))
    #: where the directory was mounted then (for the admin reading a mismatch)
    directory: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StoreHealth(StrEnum):
    READY = "ready"
    #: the database knows batches, the directory has no marker (empty, replaced, unmounted)
    MISSING = "missing"
    #: the directory's marker names another store (another volume, another installation)
    MISMATCH = "mismatch"
    #: the database or the directory could not be read; retried on the next check
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class StoreState:
    health: StoreHealth
    directory: Path
    store_id: str | None = None
    problem: str = ""

    @property
    def ready(self) -> bool:
        return self.health is StoreHealth.READY

    def report(self) -> dict[str, str]:
        """The readiness fields (what the operator reads for `BatchStoreReady`)."""
        report = {"batch_store": self.health.value, "batch_directory": str(self.directory)}
        if self.store_id:
            report["batch_store_id"] = self.store_id
        if self.problem:
            report["batch_store_problem"] = self.problem
        return report


class BatchStoreUnavailable(ServiceUnavailable):
    """Batches are refused: their documents are not where the database says (503)."""

    code = "batch_store_missing"


class BatchStoreGuard:
    """The verdict on one batch directory for this process: judged once when opened
    (`open`, at start or on the first check), then only the marker is re-read, so a
    volume that disappears under a running process is noticed at the next check.
    A verdict of `UNAVAILABLE` (database down at start) is judged again next time."""

    def __init__(self, registry: Registry, directory: Path) -> None:
        self.registry = registry
        self.directory = directory
        self._lock = threading.Lock()
        self._opened: StoreState | None = None

    def open(self) -> StoreState:
        with self._lock:
            if self._opened is None or self._opened.health is StoreHealth.UNAVAILABLE:
                try:
                    self._opened = self._judge()
                except (OSError, SQLAlchemyError, ValueError) as exc:
                    self._opened = StoreState(
                        StoreHealth.UNAVAILABLE,
                        self.directory,
                        problem=f"cannot check the batch store: {exc.__class__.__name__}: {exc}",
                    )
                if not self._opened.ready:
                    log.error("batch store %s: %s", self.directory, self._opened.problem)
            return self._opened

    def state(self) -> StoreState:
        opened = self.open()
        if not opened.ready:
            return opened
        try:
            marker = self._read_marker()
        except (OSError, ValueError) as exc:
            marker, unreadable = None, f" ({exc.__class__.__name__}: {exc})"
        else:
            unreadable = ""
        if marker == opened.store_id:
            return opened
        health = StoreHealth.MISSING if marker is None else StoreHealth.MISMATCH
        return StoreState(
            health,
            self.directory,
            opened.store_id,
            f"the batch directory {self.directory} lost its store marker {opened.store_id} "
            f"while this signer ran{unreadable}: the volume is gone or was replaced; "
            "batches are refused until it is back"
            if marker is None
            else f"the batch directory {self.directory} now carries store {marker}, not "
            f"{opened.store_id} as when this signer started: batches are refused",
        )

    def require(self) -> None:
        """Raise `BatchStoreUnavailable` unless batches may be served now."""
        state = self.state()
        if not state.ready:
            raise BatchStoreUnavailable(state.problem)

    def adopt(self) -> StoreState:
        """Accept the directory as the store of the database's batches, whatever it holds
        (an admin's decision: the old documents are gone or were copied back by hand).
        Keeps an existing marker's id; a running signer sees it after a restart."""
        marker = self._read_marker() or self._write_marker()
        self._record(marker, replace=True)
        with self._lock:
            self._opened = None
        log.warning("batch store %s adopted as store %s", self.directory, marker)
        return StoreState(StoreHealth.READY, self.directory, marker)

    # -- the first-use decision -----------------------------------------------------------

    def _judge(self) -> StoreState:
        marker = self._read_marker()
        recorded = self._recorded()
        if marker is not None and marker == recorded:
            return StoreState(StoreHealth.READY, self.directory, marker)
        newest = self._newest_batches()
        if not newest:
            # Nothing the database knows can be lost here: (re)initialise.
            store_id = marker or self._write_marker()
            self._record(store_id, replace=True)
            log.info("batch store %s initialised as store %s", self.directory, store_id)
            return StoreState(StoreHealth.READY, self.directory, store_id)
        if recorded is None:
            # Batches from before this guard (or a crash between marker and record): the
            # directory is theirs if it holds one of their folders, marker or not.
            if any((self.directory / batch).is_dir() for batch in newest):
                store_id = marker or self._write_marker()
                self._record(store_id, replace=False)
                return StoreState(StoreHealth.READY, self.directory, store_id)
            return StoreState(
                StoreHealth.MISSING if marker is None else StoreHealth.MISMATCH,
                self.directory,
                problem=f"the database lists batches (newest {newest[0]}) but the batch "
                f"directory {self.directory} holds none of their folders"
                + ("" if marker is None else f" (it belongs to store {marker})")
                + ": it is not the volume they were written to; mount that one, or accept "
                "this directory with `signet signer batch-store adopt` (those batches' "
                "documents are lost)",
            )
        if marker is None:
            return StoreState(
                StoreHealth.MISSING,
                self.directory,
                recorded,
                f"the batch directory {self.directory} has no store marker, but the "
                f"database's batches were written to store {recorded} "
                f"({self._recorded_where()}): the volume is empty, replaced or not mounted; "
                "mount the right one, or accept this directory with "
                "`signet signer batch-store adopt` (those batches' documents are lost)",
            )
        return StoreState(
            StoreHealth.MISMATCH,
            self.directory,
            recorded,
            f"the batch directory {self.directory} belongs to store {marker}, but the "
            f"database's batches were written to store {recorded} ({self._recorded_where()}): "
            "another installation's volume, or a database restored without its volume",
        )

    def _newest_batches(self) -> list[str]:
        with self.registry.session() as session:
            rows = session.scalars(
                select(BatchRecord.id).order_by(BatchRecord.created_at.desc()).limit(_ADOPT_SAMPLE)
            )
            return list(rows)

    def _recorded(self) -> str | None:
        with self.registry.session() as session:
            row = session.get(BatchStoreRecord, _ROW)
            return row.store_id if row is not None else None

    def _recorded_where(self) -> str:
        with self.registry.session() as session:
            row = session.get(BatchStoreRecord, _ROW)
        if row is None:
            return "unrecorded"
        when = row.recorded_at.replace(tzinfo=row.recorded_at.tzinfo or UTC)
        return f"first used at {row.directory} on {when:%Y-%m-%d}"

    def _record(self, store_id: str, *, replace: bool) -> None:
        """Record `store_id`; without `replace`, a row another replica wrote first stands."""
        for _ in range(2):  # a replica inserting the row meanwhile: the second pass sees it
            try:
                with self.registry.session() as session, session.begin():
                    row = session.get(BatchStoreRecord, _ROW)
                    if row is None:
                        session.add(
                            BatchStoreRecord(
                                name=_ROW,
                                store_id=store_id,
                                directory=str(self.directory),
                                recorded_at=datetime.now(UTC),
                            )
                        )
                    elif replace:
                        row.store_id, row.directory = store_id, str(self.directory)
                        row.recorded_at = datetime.now(UTC)
                return
            except IntegrityError:
                continue
        raise RuntimeError("the batch store record keeps changing under this signer")

    # -- the marker -------------------------------------------------------------------------

    def _read_marker(self) -> str | None:
        try:
            raw = (self.directory / MARKER).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        store_id = json.loads(raw).get("store_id")
        if not isinstance(store_id, str) or not store_id:
            raise ValueError(f"{MARKER} names no store_id")
        return store_id

    def _write_marker(self) -> str:
        """Create the marker if absent, atomically (replicas sharing a fresh volume: one
        marker wins, every replica returns its id); durable before it is recorded, so a
        crash in between leaves a marker the next start adopts, never a record without one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        store_id = secrets.token_hex(16)
        body = json.dumps({"store_id": store_id, "created_at": datetime.now(UTC).isoformat()})
        temporary = self.directory / f"{MARKER}.{store_id}.tmp"
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, self.directory / MARKER)  # fails if one exists: never replaced
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links (some SMB or FUSE drivers)
            self._create_exclusively(body)
        finally:
            temporary.unlink()
        fsync_directory(self.directory)
        winner = self._read_marker()
        assert winner is not None
        return winner

    def _create_exclusively(self, body: str) -> None:
        """The marker by O_EXCL: a replica reading it before it is written sees no store id
        (`UNAVAILABLE`, judged again at its next check), never a second marker."""
        try:
            handle = os.open(self.directory / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        try:
            os.write(handle, body.encode())
            os.fsync(handle)
        finally:
            os.close(handle)
