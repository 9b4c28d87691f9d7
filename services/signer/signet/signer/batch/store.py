"""Batch sealing: many documents, one seal, and a record that survives crashed workers.

A batch is a row in the signer database plus a folder: ``in/uploads.spool``
holds the uploaded documents one after the other (each item row knows its
offset and size), ``out/`` the signed ones, in append-only packs
(`signet.signer.batch.results`).  Every document is an item that a worker
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

__all__ = [
    "CLAIM_LEASE",
    "BatchImageUnreadable",
    "BatchItemRecord",
    "BatchRecord",
    "BatchStore",
    "Claim",
    "Outcome",
    "claimant_is_dead",
    "this_worker",
]

import io
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from signet.common.contracts.signer import (
    BatchItemState,
    BatchStatus,
    SignOptions,
)
from signet.common.errors import Conflict, NotFound
from signet.signer.batch.durable import Slice, fsync_directory
from signet.signer.batch.queue import (
    CLAIM_LEASE,
    BatchItemRecord,
    BatchQueue,
    BatchRecord,
    Claim,
    Outcome,
    claimant_is_dead,
    this_worker,
    utc_now,
)
from signet.signer.batch.results import StoredOutput, write_results
from signet.signer.batch.status import batch_status
from signet.signer.batch.uploads import SPOOL, WRITE_BUFFER, Upload
from signet.signer.registry import Registry
from sqlalchemy import (
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
#: Documents up to this size are read from the spool into memory in one call; larger
#: ones are streamed from it (a 200 MB document must not cost 200 MB of RAM).
_IN_MEMORY = 8 * 1024 * 1024


class BatchImageUnreadable(OSError):
    """A batch's appearance image cannot be read: its documents cannot be sealed as asked."""

    def __init__(self, batch_id: str, why: str) -> None:
        #: For the item's error (shown to API callers): no path.
        self.detail = f"the batch's appearance image cannot be read ({why}): not sealed without it"
        super().__init__(f"batch {batch_id}: {self.detail}")


class BatchStore(BatchQueue):
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

    def image(self, batch_id: str) -> bytes:
        """The appearance image of a batch created with one (its record's ``has_image``).

        Raises `BatchImageUnreadable` when it is missing, empty or cannot be read: sealing
        without it would make another document than the one requested.  An `OSError`, so
        that a worker's store guard postpones the batch when the volume is the cause.
        """
        path = self.folder(batch_id) / "image.png"
        try:
            image = path.read_bytes()
        except FileNotFoundError as exc:
            raise BatchImageUnreadable(batch_id, "it is missing") from exc
        except OSError as exc:
            raise BatchImageUnreadable(batch_id, exc.strerror or type(exc).__name__) from exc
        if not image:
            raise BatchImageUnreadable(batch_id, "it is empty")
        return image

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

    def finished_marker(self, batch_id: str) -> Path:
        return self.folder(batch_id) / "finished"

    def batch_finished(self, batch_id: str) -> None:
        """Leave a marker beside the batch's results: long-polling requests of every
        process on this host watch for it (`signet.signer.batch.wait`).  Only a hint,
        never synced: the database says whether a batch is finished."""
        try:
            self.finished_marker(batch_id).touch()
        except OSError as exc:  # the waiting requests learn it from the database instead
            log.warning("cannot mark batch %s finished: %s", batch_id, exc)

    def finished_hint(self, batch_id: str) -> bool:
        """Whether the batch's finished marker is there (a stat; False for a bad id)."""
        return batch_id.isalnum() and os.path.exists(self.finished_marker(batch_id))  # noqa: PTH110

    def finished_of(self, batch_ids: list[str]) -> list[str]:
        """Which of these batches the database records as finished."""
        with self.registry.session() as session:
            return list(
                session.scalars(
                    select(BatchRecord.id).where(
                        BatchRecord.id.in_(batch_ids), BatchRecord.finished_at.is_not(None)
                    )
                )
            )

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
            created_at=utc_now(),
        )
        upload.staging.rename(self.folder(batch_id))
        fsync_directory(self.directory)
        try:
            with self.registry.session() as session, session.begin():
                session.add(record)
                session.flush()
                # one Core executemany on the table: the ORM's bulk insert (same SQL) spent
                # another ~7 ms of CPU per 1,000 rows sorting the rows into its mapper
                session.connection().execute(
                    insert(BatchItemRecord.metadata.tables[BatchItemRecord.__tablename__]),
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
        return batch_status(self.registry, self.record(batch_id), with_items=with_items)

    # -- results ---------------------------------------------------------------------------

    def write_results(self, batch_id: str, target: IO[bytes]) -> None:
        """A zip of the signed documents and report.csv, written to `target` as it goes
        (`signet.signer.batch.results.write_results`); 409 while the batch runs."""
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
