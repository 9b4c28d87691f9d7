"""Batch sealing: many documents, one seal, and a record that survives crashed workers.

A batch is a row in the signer database plus a folder: ``in/uploads.spool``
holds the uploaded documents one after the other (each item row knows its
offset and size), ``out/`` the signed ones, in append-only packs
(`signet.signer.batch_results`).  Every document is an item that a worker
*claims* with one atomic UPDATE (so several worker processes share the work
without a coordinator), signs into its pack, and records as done, with where
its signed document is, only once the pack is durable.  A worker that dies
leaves claimed items behind; `BatchStore.recover` hands them back once the
claimant is known dead (same host, no such process) or its lease expired, and
they are signed again: what the dead worker wrote but did not record is never
referenced, so each document appears in the results exactly once.

Durability is paid per group, not per document, because an fsync costs
about as much as signing a one-page document: an upload is one spool file
made durable by one fsync before the 201; a worker appends the signed
documents of its whole claim to its pack, fsyncs it once, and records the
claim in one transaction.

Nothing here deletes or overwrites a signed document: the folder is the
batch's result until the retention machinery of the storage service takes over.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, BinaryIO

from signet.common.contracts.signer import (
    BatchItem,
    BatchItemState,
    BatchStatus,
    SignatureLevel,
    SignOptions,
)
from signet.common.errors import Conflict, NotFound
from signet.signer.batch_results import StoredOutput, write_results
from signet.signer.batch_uploads import SPOOL, WRITE_BUFFER, Upload
from signet.signer.durable import Slice, fsync_directory
from signet.signer.registry import Base, Registry
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

#: A claim older than this is taken back even if its claimant may still live elsewhere.
CLAIM_LEASE = timedelta(minutes=15)
_CHUNK = 1024 * 1024
#: Documents up to this size are read from the spool into memory in one call; larger
#: ones are streamed from it (a 200 MB document must not cost 200 MB of RAM).
_IN_MEMORY = 8 * 1024 * 1024


class BatchRecord(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    options_json: Mapped[str] = mapped_column(Text)
    has_image: Mapped[bool] = mapped_column(Boolean)
    certificate_serial: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(8))
    total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BatchItemRecord(Base):
    __tablename__ = "batch_items"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(8), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    input_sha256: Mapped[str] = mapped_column(String(64))
    output_sha256: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Where the document is in ``in/uploads.spool``; NULL for batches staged before the
    #: spool existed (one file per document, ``in/NNNNNN.pdf``).
    input_offset: Mapped[int | None] = mapped_column(BigInteger)
    input_size: Mapped[int | None] = mapped_column(BigInteger)
    #: Where the signed document is: a pack in ``out/`` and the slice of it; NULL for
    #: items signed before packs existed (one file per document, ``out/NNNNNN.pdf``).
    output_pack: Mapped[str | None] = mapped_column(String(64))
    output_offset: Mapped[int | None] = mapped_column(BigInteger)
    output_size: Mapped[int | None] = mapped_column(BigInteger)


def this_worker(suffix: str = "") -> str:
    """Identity of a claimant: host and process (so a dead local claimant is recognisable),
    then anything that tells threads of one process apart."""
    return f"{socket.gethostname()}:{os.getpid()}/{suffix}"


def claimant_is_dead(worker: str) -> bool:
    host, _, pid = worker.partition("/")[0].rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's process: only its lease can expire
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class Claim:
    """A claimed item, with where its document is in the batch's spool (None: own file)."""

    batch_id: str
    index: int
    input_offset: int | None = None
    input_size: int | None = None


@dataclass(frozen=True)
class Outcome:
    """How an item ended: signed (where its document is) or failed (why)."""

    batch_id: str
    index: int
    output_sha256: str | None = None
    error: str | None = None
    output_pack: str | None = None
    output_offset: int | None = None
    output_size: int | None = None


class BatchStore:
    """Batches of one signer database and folder; the tables are the registry's, made and
    migrated when it opens (`signet.signer.migrations`)."""

    def __init__(self, registry: Registry, directory: Path) -> None:
        self.registry = registry
        self.directory = directory

    # -- paths -----------------------------------------------------------------------------

    def folder(self, batch_id: str) -> Path:
        return self.directory / batch_id

    def input_path(self, batch_id: str, index: int) -> Path:
        return self.folder(batch_id) / "in" / f"{index:06d}.pdf"

    def output_folder(self, batch_id: str) -> Path:
        """Where the batch's packs are (and, before packs, one file per document)."""
        return self.folder(batch_id) / "out"

    def image(self, batch_id: str) -> bytes | None:
        path = self.folder(batch_id) / "image.png"
        return path.read_bytes() if path.exists() else None

    def open_spool(self, batch_id: str) -> BinaryIO | None:
        """The batch's upload spool, unbuffered, for `open_input` (None: staged before
        the spool).  A worker keeps it open for the batch: opening it per document cost
        4% of sealing a one-page document."""
        try:
            return (self.folder(batch_id) / "in" / SPOOL).open("rb", buffering=0)
        except FileNotFoundError:
            return None

    @contextmanager
    def open_input(self, claim: Claim, spool: BinaryIO | None = None) -> Iterator[BinaryIO]:
        """The claimed document, readable and seekable from its first byte; read from
        `spool` (`open_spool` of the claim's batch) when given."""
        if claim.input_offset is None or claim.input_size is None:
            with self.input_path(claim.batch_id, claim.index).open("rb") as handle:
                yield handle
            return
        if spool is None:
            own = self.open_spool(claim.batch_id)
            if own is None:
                raise FileNotFoundError(f"the upload spool of batch {claim.batch_id} is missing")
            with own, self.open_input(claim, own) as source:
                yield source
            return
        if claim.input_size <= _IN_MEMORY:
            data = os.pread(spool.fileno(), claim.input_size, claim.input_offset)
            if len(data) != claim.input_size:
                raise OSError(f"the upload spool of batch {claim.batch_id} is truncated")
            yield io.BytesIO(data)
        else:
            yield io.BufferedReader(Slice(spool, claim.input_offset, claim.input_size))

    @property
    def queue_marker(self) -> Path:
        """Touched after every new batch: idle workers of every process on this host watch
        its mtime, so they start within milliseconds instead of at their next poll."""
        return self.directory / ".queued"

    def queue_mark(self) -> int:
        try:
            return self.queue_marker.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    # -- creating --------------------------------------------------------------------------

    def upload(self, max_document_bytes: int) -> Upload:
        """A new batch's staging folder, to feed documents into (`Upload`), then `publish`."""
        return Upload(self.directory, max_document_bytes)

    def create(
        self,
        documents: Iterable[tuple[str | None, BinaryIO]],
        options: SignOptions,
        certificate_serial: str,
        *,
        image: bytes | None = None,
        idempotency_key: str | None = None,
        max_document_bytes: int,
    ) -> tuple[BatchStatus, bool]:
        """Store the documents and queue them; returns (status without items, created).

        `publish` of an `Upload` fed from the streams, 1 MiB at a time.
        """
        upload = self.upload(max_document_bytes)
        try:
            for name, stream in documents:
                upload.begin(name)
                while chunk := stream.read(_CHUNK):
                    upload.write(chunk)
                    if upload.pending >= WRITE_BUFFER:
                        upload.flush()
                upload.end()
            return self.publish(
                upload,
                options,
                certificate_serial,
                image=image,
                idempotency_key=idempotency_key,
            )
        finally:
            upload.discard()

    def publish(
        self,
        upload: Upload,
        options: SignOptions,
        certificate_serial: str,
        *,
        image: bytes | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[BatchStatus, bool]:
        """Make an upload a queued batch; returns (status without items, created).

        Returns only once the documents are durable (`Upload.seal`: one fsync of the
        spool, then the directory entries) and queued.  With an idempotency key already
        used for the same request, the existing batch comes back (created=False) and the
        upload is left to be discarded; for a different request, 409.
        """
        upload.seal(image)
        request_digest = upload.request_digest(options, image)
        if idempotency_key is not None:
            existing = self._by_idempotency_key(idempotency_key, request_digest)
            if existing is not None:
                return existing, False
        batch_id = upload.batch_id
        record = BatchRecord(
            id=batch_id,
            idempotency_key=idempotency_key,
            request_sha256=request_digest,
            options_json=options.model_dump_json(),
            has_image=image is not None,
            certificate_serial=certificate_serial,
            level=options.level.value,
            total=len(upload.items),
            created_at=_now(),
        )
        upload.staging.rename(self.folder(batch_id))
        fsync_directory(self.directory)
        try:
            with self.registry.session() as session, session.begin():
                session.add(record)
                session.flush()
                # one executemany, not the ORM's unit of work: 10,000 rows in milliseconds
                session.execute(
                    insert(BatchItemRecord),
                    [
                        {
                            "batch_id": batch_id,
                            "idx": index,
                            "filename": item.filename,
                            "state": BatchItemState.PENDING.value,
                            "input_sha256": item.sha256,
                            "input_offset": item.offset,
                            "input_size": item.size,
                        }
                        for index, item in enumerate(upload.items)
                    ],
                )
        except IntegrityError:
            # the same idempotency key raced us; the other request's batch stands
            shutil.rmtree(self.folder(batch_id), ignore_errors=True)
            assert idempotency_key is not None
            existing = self._by_idempotency_key(idempotency_key, request_digest)
            if existing is None:
                raise
            return existing, False
        self.queue_marker.touch()
        return self.status(batch_id, with_items=False), True

    def _by_idempotency_key(self, key: str, request_digest: str) -> BatchStatus | None:
        with self.registry.session() as session:
            record = session.scalars(
                select(BatchRecord).where(BatchRecord.idempotency_key == key)
            ).first()
        if record is None:
            return None
        if record.request_sha256 != request_digest:
            raise Conflict("this Idempotency-Key was used for a different batch request")
        return self.status(record.id)

    # -- reading ---------------------------------------------------------------------------

    def record(self, batch_id: str) -> BatchRecord:
        with self.registry.session() as session:
            record = session.get(BatchRecord, batch_id)
        if record is None:
            raise NotFound(f"no batch {batch_id}")
        return record

    def options(self, batch_id: str) -> SignOptions:
        return SignOptions.model_validate_json(self.record(batch_id).options_json)

    def status(self, batch_id: str, *, with_items: bool = True) -> BatchStatus:
        record = self.record(batch_id)
        with self.registry.session() as session:
            counts = dict(
                session.execute(
                    select(BatchItemRecord.state, func.count())
                    .where(BatchItemRecord.batch_id == batch_id)
                    .group_by(BatchItemRecord.state)
                ).all()
            )
            rows = (
                session.scalars(
                    select(BatchItemRecord)
                    .where(BatchItemRecord.batch_id == batch_id)
                    .order_by(BatchItemRecord.idx)
                ).all()
                if with_items
                else []
            )
        done = counts.get(BatchItemState.DONE.value, 0)
        failed = counts.get(BatchItemState.FAILED.value, 0)
        pending = record.total - done - failed
        return BatchStatus(
            id=record.id,
            state="finished" if pending == 0 else "running",
            created_at=_aware(record.created_at) or _now(),
            finished_at=_aware(record.finished_at),
            level=SignatureLevel(record.level),
            certificate_serial=record.certificate_serial,
            total=record.total,
            done=done,
            failed=failed,
            pending=pending,
            items=[
                BatchItem(
                    index=row.idx,
                    filename=row.filename,
                    state=BatchItemState(row.state),
                    error=row.error,
                    input_sha256=row.input_sha256,
                    output_sha256=row.output_sha256,
                )
                for row in rows
            ],
        )

    # -- working ---------------------------------------------------------------------------

    def claim(self, worker: str, limit: int = 1) -> list[Claim]:
        """Take up to `limit` of the oldest pending items, atomically (one statement, so
        no item has two claimants).

        Committed without waiting for the disk (`Registry.undurable_session`): a claim
        lost in a power cut leaves its items pending, which is where they were, and the
        claimant records nothing before its own durable commit.  Measured during 1-page
        batches: a claim took 7.6-9.9 ms with its fsync, 2.8-3.6 ms without.
        """
        with self.registry.undurable_session() as session, session.begin():
            rows = session.execute(
                text(
                    "UPDATE batch_items SET state = 'running', worker = :worker, "
                    "claimed_at = :now WHERE (batch_id, idx) IN ("
                    "  SELECT batch_id, idx FROM batch_items WHERE state = 'pending' "
                    "  ORDER BY batch_id, idx LIMIT :limit"
                    ") AND state = 'pending' "
                    "RETURNING batch_id, idx, input_offset, input_size"
                ).bindparams(bindparam("now", type_=DateTime(timezone=True))),
                {"worker": worker, "now": _now(), "limit": limit},
            ).all()
        claims = (
            Claim(
                str(row[0]),
                int(row[1]),
                None if row[2] is None else int(row[2]),
                None if row[3] is None else int(row[3]),
            )
            for row in rows
        )
        return sorted(claims, key=lambda claim: (claim.batch_id, claim.index))

    def finish(
        self,
        batch_id: str,
        index: int,
        worker: str,
        *,
        output_sha256: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Record one item's outcome if `worker` still holds it."""
        return self.finish_many(worker, [Outcome(batch_id, index, output_sha256, error)]) == 1

    def finish_many(self, worker: str, outcomes: list[Outcome]) -> int:
        """Record outcomes in one transaction; closes batches whose last item this was.

        The signed documents must be durable before (their pack synced): the row is
        what makes one part of the results.  Returns how
        many were recorded (for several outcomes, exact where the driver counts an
        executemany: SQLite, psycopg 3; `finish` of one outcome is exact everywhere).
        """
        if not outcomes:
            return 0
        items = Base.metadata.tables["batch_items"]
        now = _now()
        with self.registry.session() as session, session.begin():
            # one prepared statement for all outcomes (executemany), not one ORM update each
            result = session.connection().execute(
                update(items)
                .where(
                    items.c.batch_id == bindparam("b_batch_id"),
                    items.c.idx == bindparam("b_idx"),
                    items.c.state == BatchItemState.RUNNING.value,
                    items.c.worker == worker,
                )
                .values(
                    state=bindparam("b_state"),
                    output_sha256=bindparam("b_output_sha256"),
                    error=bindparam("b_error"),
                    output_pack=bindparam("b_output_pack"),
                    output_offset=bindparam("b_output_offset"),
                    output_size=bindparam("b_output_size"),
                    finished_at=now,
                ),
                [
                    {
                        "b_batch_id": o.batch_id,
                        "b_idx": o.index,
                        "b_state": (
                            BatchItemState.DONE if o.error is None else BatchItemState.FAILED
                        ).value,
                        "b_output_sha256": o.output_sha256,
                        "b_error": o.error,
                        "b_output_pack": o.output_pack,
                        "b_output_offset": o.output_offset,
                        "b_output_size": o.output_size,
                    }
                    for o in outcomes
                ],
            )
            recorded = int(result.rowcount)
            for batch_id in {o.batch_id for o in outcomes}:
                open_items = session.scalar(
                    select(func.count())
                    .select_from(BatchItemRecord)
                    .where(
                        BatchItemRecord.batch_id == batch_id,
                        BatchItemRecord.state.in_(
                            [BatchItemState.PENDING.value, BatchItemState.RUNNING.value]
                        ),
                    )
                )
                if not open_items:
                    session.execute(
                        update(BatchRecord)
                        .where(BatchRecord.id == batch_id, BatchRecord.finished_at.is_(None))
                        .values(finished_at=_now())
                    )
        return recorded

    def release(self, batch_id: str, index: int, worker: str) -> None:
        """Give an item back (the HSM is down: nothing is wrong with the document)."""
        with self.registry.session() as session, session.begin():
            _hand_back(session, batch_id, index, worker)

    def recover(self, is_dead: Callable[[str], bool] = claimant_is_dead) -> int:
        """Hand back items whose claimant died or whose lease expired; returns how many."""
        expired = _now() - CLAIM_LEASE
        with self.registry.session() as session, session.begin():
            running = session.execute(
                select(
                    BatchItemRecord.batch_id,
                    BatchItemRecord.idx,
                    BatchItemRecord.worker,
                    BatchItemRecord.claimed_at,
                ).where(BatchItemRecord.state == BatchItemState.RUNNING.value)
            ).all()
            recovered = 0
            for batch_id, index, worker, claimed_at in running:
                claimed = _aware(claimed_at)
                if (claimed is not None and claimed < expired) or is_dead(worker or ""):
                    _hand_back(session, batch_id, index, worker)
                    recovered += 1
        return recovered

    # -- results ---------------------------------------------------------------------------

    def write_results(self, batch_id: str, target: IO[bytes]) -> None:
        """A zip of the signed documents and report.csv, written to `target` as it goes
        (`signet.signer.batch_results.write_results`); 409 while the batch runs."""
        status = self.status(batch_id)
        if status.state != "finished":
            raise Conflict(
                f"batch {batch_id} is still running: {status.done + status.failed} of "
                f"{status.total} documents finished"
            )
        with self.registry.session() as session:
            outputs = [
                StoredOutput(int(index), pack, offset, size)
                for index, pack, offset, size in session.execute(
                    select(
                        BatchItemRecord.idx,
                        BatchItemRecord.output_pack,
                        BatchItemRecord.output_offset,
                        BatchItemRecord.output_size,
                    ).where(
                        BatchItemRecord.batch_id == batch_id,
                        BatchItemRecord.state == BatchItemState.DONE.value,
                    )
                )
            ]
        write_results(status, outputs, self.folder(batch_id) / "out", target)


def _hand_back(session: Session, batch_id: str, index: int, worker: str | None) -> None:
    """Make a running item pending again, if `worker` still holds it."""
    session.execute(
        update(BatchItemRecord)
        .where(
            BatchItemRecord.batch_id == batch_id,
            BatchItemRecord.idx == index,
            BatchItemRecord.worker == worker,
            BatchItemRecord.state == BatchItemState.RUNNING.value,
        )
        .values(state=BatchItemState.PENDING.value, worker=None, claimed_at=None)
    )
