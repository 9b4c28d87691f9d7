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
- a recorded id: the marker must carry it, and the newest batches recorded since must
  have their folders (else the volume is an older copy of the store: `STALE`).

While it runs, a process re-reads the marker at every check and the record every few
seconds (`RECORD_TTL`): a volume unmounted, or another replica that recorded another
directory's store, is noticed without a restart.

Clients (the batch API's 503, the unauthenticated ``/readyz`` the operator copies into
the Appliance's status) get the verdict and a fixed sentence per verdict; the paths,
store ids and errors go to the signer's log and to ``signet signer batch-store status``.

An admin who knows the documents are gone (or restored them by hand) accepts
the directory with `adopt` (``signet signer batch-store adopt``); nothing here
deletes or rewrites a batch's files.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from signet.signer.batch.marker import MARKER, BadMarker, StoreMarker
from signet.signer.batch.store_state import (
    BatchStoreUnavailable,
    StoreHealth,
    StoreState,
    unavailable,
)
from signet.signer.batch.tables import BatchRecord, BatchStoreRecord
from signet.signer.registry import Registry
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

__all__ = [
    "MARKER",
    "RECORD_TTL",
    "BatchStoreGuard",
    "BatchStoreRecord",
    "BatchStoreUnavailable",
    "StoreHealth",
    "StoreState",
]

log = logging.getLogger(__name__)

#: The one row of `BatchStoreRecord` (a fixed key: two replicas initialising a fresh
#: store at once insert the same key, and the second one reads the first one's id).
_ROW = "batches"
#: How many of the newest batches are looked for when adopting an unmarked directory,
#: and must have their folders in a marked one.
_ADOPT_SAMPLE = 20
#: Seconds a running process reuses the recorded store id before reading it again (one
#: primary-key read): another replica recording another store is noticed within this.
RECORD_TTL = 5.0


class BatchStoreGuard:
    """The verdict on one batch directory for this process: judged once when opened
    (`open`, at start or on the first check), then the marker is re-read at every check
    and the record every `record_ttl` seconds, so a volume that disappears under a running
    process, or a record another replica replaced, is noticed at the next check.
    `UNAVAILABLE` and `BAD_MARKER` verdicts are judged again next time."""

    def __init__(
        self,
        registry: Registry,
        directory: Path,
        *,
        record_ttl: float = RECORD_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.directory = directory
        self.record_ttl, self.clock = record_ttl, clock
        self._lock = threading.Lock()
        self._opened: StoreState | None = None
        self._record_cache: tuple[float, str | None] | None = None
        self._reported: StoreHealth | None = None
        self.marker = StoreMarker(directory)

    def open(self) -> StoreState:
        with self._lock:
            if self._opened is None or self._opened.health in (
                StoreHealth.UNAVAILABLE,
                StoreHealth.BAD_MARKER,
            ):
                try:
                    self._opened = self._judge()
                except Exception as exc:  # readiness must answer, whatever went wrong
                    self._opened = unavailable(self.directory, exc, "check the batch store")
            return self._opened

    def state(self) -> StoreState:
        """The verdict now (never raises: what cannot be checked is `UNAVAILABLE`)."""
        state = self._state()
        if state.health is not self._reported:  # log each change once, not every check
            self._reported = state.health
            if state.ready:
                log.info("batch store %s: store %s", self.directory, state.store_id)
            else:
                log.error("batch store %s (%s): %s", self.directory, state.health, state.problem)
        return state

    def _state(self) -> StoreState:
        opened = self.open()
        if not opened.ready:
            return opened
        try:
            marker = self.marker.now()
            recorded = self._recorded_cached()
        except BadMarker as exc:
            return StoreState(
                StoreHealth.BAD_MARKER,
                self.directory,
                opened.store_id,
                f"the store marker {self.directory / MARKER} became unreadable while this "
                f"signer ran ({exc}): batches are refused until it is back",
            )
        except Exception as exc:
            return unavailable(self.directory, exc, "check the batch store")
        if marker is None:
            return StoreState(
                StoreHealth.MISSING,
                self.directory,
                opened.store_id,
                f"the batch directory {self.directory} lost its store marker "
                f"{opened.store_id} while this signer ran: the volume is gone or was "
                "replaced; batches are refused until it is back",
            )
        if marker != opened.store_id:
            return StoreState(
                StoreHealth.MISMATCH,
                self.directory,
                opened.store_id,
                f"the batch directory {self.directory} now carries store {marker}, not "
                f"{opened.store_id} as when this signer started: batches are refused",
            )
        if recorded != opened.store_id:
            return StoreState(
                StoreHealth.MISMATCH,
                self.directory,
                opened.store_id,
                f"the database now records the batches' store as {recorded}, not "
                f"{opened.store_id} of {self.directory} as when this signer started "
                "(another replica on another directory, or an adopt): batches are refused; "
                "restart this signer once every replica mounts the same volume",
            )
        return opened

    def require(self) -> None:
        """Raise `BatchStoreUnavailable` unless batches may be served now."""
        state = self.state()
        if not state.ready:
            raise BatchStoreUnavailable(state)

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Around work on a batch's files (a worker signing a document): refused with
        `BatchStoreUnavailable` (a `ServiceUnavailable`: postponed, the claim handed
        back) unless the store is ready, and a file error meanwhile is raised as that too
        if the store is no longer ready: the volume went, not the document.  A file error
        while the store is still ready is the document's, and raised as it is."""
        self.require()
        try:
            yield
        except OSError as exc:
            state = self.recheck()
            if state.ready:
                raise
            raise BatchStoreUnavailable(state) from exc

    def recheck(self) -> StoreState:
        """The verdict now, judged with the database's current record (not the one cached
        for `record_ttl`): after a file error, to tell whose fault it was (the store gone
        or replaced, or the file)."""
        with self._lock:
            self._record_cache = None
        return self.state()

    def adopt(self) -> StoreState:
        """Accept the directory as the store of the database's batches, whatever it holds
        (an admin's decision: the old documents are gone or were copied back by hand).
        Keeps an existing marker's id, replaces one that is not a marker (it holds no
        document); a running signer sees it after a restart."""
        try:
            marker = self.marker.read() or self.marker.write()
        except BadMarker as exc:
            log.warning("batch store %s: replacing its unreadable marker (%s)", self.directory, exc)
            marker = self.marker.write(replace=True)
        self._record(marker, force=True)
        with self._lock:
            self._opened, self._record_cache = None, None
        log.warning("batch store %s adopted as store %s", self.directory, marker)
        return StoreState(StoreHealth.READY, self.directory, marker)

    # -- the first-use decision -----------------------------------------------------------

    def _judge(self) -> StoreState:
        try:
            marker = self.marker.read()
        except BadMarker as exc:
            return StoreState(
                StoreHealth.BAD_MARKER,
                self.directory,
                problem=f"the store marker {self.directory / MARKER} is not one ({exc}): a "
                "crash while it was created, or an edit; if this directory is the batches' "
                "own, accept it with `signet signer batch-store adopt --yes` (a new marker)",
            )
        row = self._row()
        recorded = row.store_id if row is not None else None
        if marker is not None and marker == recorded:
            assert row is not None
            return self._stale_or_ready(marker, row.recorded_at)
        newest = self._newest_batches()
        if not newest:
            # Nothing the database knows can be lost here: (re)initialise, unless another
            # replica recorded its own store since the record was read.
            store_id = marker or self.marker.write()
            winner = self._record(store_id, expected=recorded)
            if winner != store_id:
                return self._mismatch(store_id, winner)
            log.info("batch store %s initialised as store %s", self.directory, store_id)
            return StoreState(StoreHealth.READY, self.directory, store_id)
        if recorded is None:
            # Batches from before this guard (or a crash between marker and record): the
            # directory is theirs if it holds one of their folders, marker or not.
            if any((self.directory / batch).is_dir() for batch in newest):
                store_id = marker or self.marker.write()
                winner = self._record(store_id, expected=None)
                if winner != store_id:
                    return self._mismatch(store_id, winner)
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
        return self._mismatch(marker, recorded)

    def _mismatch(self, marker: str, recorded: str | None) -> StoreState:
        return StoreState(
            StoreHealth.MISMATCH,
            self.directory,
            recorded,
            f"the batch directory {self.directory} belongs to store {marker}, but the "
            f"database's batches were written to store {recorded} ({self._recorded_where()}): "
            "another installation's volume, another replica's directory, or a database "
            "restored without its volume",
        )

    def _stale_or_ready(self, store_id: str, recorded_at: datetime) -> StoreState:
        """The marker is right: are the newest batches written to this store there too?
        A snapshot of the volume older than the database has the marker but not them."""
        since = recorded_at.replace(tzinfo=recorded_at.tzinfo or UTC)
        newest = self._newest_batches(since)
        absent = [batch for batch in newest if not (self.directory / batch).is_dir()]
        if not absent:
            return StoreState(StoreHealth.READY, self.directory, store_id)
        return StoreState(
            StoreHealth.STALE,
            self.directory,
            store_id,
            f"the batch directory {self.directory} is store {store_id}, but {len(absent)} of "
            f"the newest {len(newest)} batches' folders are not in it (newest missing: "
            f"{absent[0]}): an older copy of the volume than the database; restore the "
            "volume's latest copy, or accept this one with `signet signer batch-store "
            "adopt` (the missing batches' documents are lost)",
        )

    def _newest_batches(self, since: datetime | None = None) -> list[str]:
        query = select(BatchRecord.id).order_by(BatchRecord.created_at.desc())
        if since is not None:
            query = query.where(BatchRecord.created_at >= since)
        with self.registry.session() as session:
            return list(session.scalars(query.limit(_ADOPT_SAMPLE)))

    def _row(self) -> BatchStoreRecord | None:
        with self.registry.session() as session:
            row = session.get(BatchStoreRecord, _ROW)
            if row is not None:
                session.expunge(row)
            return row

    def _recorded_cached(self) -> str | None:
        """The recorded store id, read again once `record_ttl` has passed."""
        now = self.clock()
        with self._lock:
            cached = self._record_cache
        if cached is not None and now - cached[0] < self.record_ttl:
            return cached[1]
        row = self._row()
        recorded = row.store_id if row is not None else None
        with self._lock:
            self._record_cache = (now, recorded)
        return recorded

    def _recorded_where(self) -> str:
        row = self._row()
        if row is None:
            return "unrecorded"
        when = row.recorded_at.replace(tzinfo=row.recorded_at.tzinfo or UTC)
        return f"first used at {row.directory} on {when:%Y-%m-%d}"

    def _record(self, store_id: str, *, expected: str | None = None, force: bool = False) -> str:
        """Record `store_id` if the record still holds `expected` (None: no record yet),
        or whatever it holds with `force` (an admin's adopt, which also moves `recorded_at`:
        older batches are written off); returns the id recorded afterwards: another
        replica's, if it recorded its own meanwhile."""
        values = {
            "store_id": store_id,
            "directory": str(self.directory),
            "recorded_at": datetime.now(UTC),
        }
        for _ in range(2):  # a replica inserting the row meanwhile: the second pass sees it
            try:
                with self.registry.session() as session, session.begin():
                    row = session.get(BatchStoreRecord, _ROW)
                    if row is None:
                        session.add(BatchStoreRecord(name=_ROW, **values))
                        return store_id
                    if row.store_id == store_id and not force:
                        return store_id
                    if force or (expected is not None and row.store_id == expected):
                        # compare-and-set: only if no other replica replaced it meanwhile
                        where = [BatchStoreRecord.name == _ROW]
                        if not force:
                            where.append(BatchStoreRecord.store_id == expected)
                        changed = session.execute(
                            update(BatchStoreRecord).where(*where).values(**values)
                        )
                        if getattr(changed, "rowcount", 0) == 1:
                            return store_id
                    winner = session.get(BatchStoreRecord, _ROW, populate_existing=True)
                    return winner.store_id if winner is not None else store_id
            except IntegrityError:
                continue
        raise RuntimeError("the batch store record keeps changing under this signer")
