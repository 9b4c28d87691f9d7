"""Batch sealing: many documents, one seal, and a record that survives crashed workers.

A batch is a row in the signer database plus a folder: ``in/`` holds the
uploaded documents, ``out/`` the signed ones.  Every document is an item
that a worker *claims* with one atomic UPDATE (so several worker processes
share the work without a coordinator), signs, writes to ``out/`` by an
atomic rename, and only then records as done.  A worker that dies leaves
claimed items behind; `BatchStore.recover` hands them back once the
claimant is known dead (same host, no such process) or its lease expired.
A claimed item whose signed file already exists is recorded as done without
signing again, so each document appears in the results exactly once.

Nothing here deletes a signed document: the folder is the batch's result
until the retention machinery of the storage service takes over.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import socket
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterable
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
from signet.common.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from signet.signer.registry import Base, Registry
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

#: A claim older than this is taken back even if its claimant may still live elsewhere.
CLAIM_LEASE = timedelta(minutes=15)
_CHUNK = 1024 * 1024


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


def safe_filename(name: str | None, index: int) -> str:
    """The uploaded name without folders or control characters, for the results zip."""
    base = Path((name or "").replace("\\", "/")).name
    cleaned = "".join(ch for ch in base if ch.isprintable() and ch not in '<>:"|?*')[:200]
    return cleaned or f"document-{index + 1}.pdf"


@dataclass(frozen=True)
class Outcome:
    batch_id: str
    index: int
    output_sha256: str | None = None
    error: str | None = None


class BatchStore:
    def __init__(self, registry: Registry, directory: Path) -> None:
        self.registry = registry
        self.directory = directory
        Base.metadata.create_all(
            registry.engine,
            tables=[Base.metadata.tables["batches"], Base.metadata.tables["batch_items"]],
        )

    # -- paths -----------------------------------------------------------------------------

    def folder(self, batch_id: str) -> Path:
        return self.directory / batch_id

    def input_path(self, batch_id: str, index: int) -> Path:
        return self.folder(batch_id) / "in" / f"{index:06d}.pdf"

    def output_path(self, batch_id: str, index: int) -> Path:
        return self.folder(batch_id) / "out" / f"{index:06d}.pdf"

    def image(self, batch_id: str) -> bytes | None:
        path = self.folder(batch_id) / "image.png"
        return path.read_bytes() if path.exists() else None

    # -- creating --------------------------------------------------------------------------

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
        """Store the documents and queue them; returns (status, created).

        With an idempotency key already used for the same request, the existing
        batch comes back (created=False); for a different request, 409.
        """
        batch_id = uuid.uuid4().hex
        staging = Path(tempfile.mkdtemp(prefix=f".{batch_id}-", dir=self._ensure_directory()))
        try:
            items, request_digest = self._stage(
                staging, documents, options, image, max_document_bytes
            )
            if idempotency_key is not None:
                existing = self._by_idempotency_key(idempotency_key, request_digest)
                if existing is not None:
                    return existing, False
            if image is not None:
                (staging / "image.png").write_bytes(image)
            record = BatchRecord(
                id=batch_id,
                idempotency_key=idempotency_key,
                request_sha256=request_digest,
                options_json=options.model_dump_json(),
                has_image=image is not None,
                certificate_serial=certificate_serial,
                level=options.level.value,
                total=len(items),
                created_at=_now(),
            )
            staging.rename(self.folder(batch_id))
            _fsync_directory(self.directory)
            try:
                with self.registry.session() as session, session.begin():
                    session.add(record)
                    session.flush()
                    session.add_all(
                        BatchItemRecord(
                            batch_id=batch_id,
                            idx=index,
                            filename=name,
                            state=BatchItemState.PENDING.value,
                            input_sha256=digest,
                        )
                        for index, (name, digest) in enumerate(items)
                    )
            except IntegrityError:
                # the same idempotency key raced us; the other request's batch stands
                shutil.rmtree(self.folder(batch_id), ignore_errors=True)
                assert idempotency_key is not None
                existing = self._by_idempotency_key(idempotency_key, request_digest)
                if existing is None:
                    raise
                return existing, False
            return self.status(batch_id), True
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _ensure_directory(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.directory

    def _stage(
        self,
        staging: Path,
        documents: Iterable[tuple[str | None, BinaryIO]],
        options: SignOptions,
        image: bytes | None,
        limit: int,
    ) -> tuple[list[tuple[str, str]], str]:
        """Copy uploads into the batch folder while hashing them (bounded memory)."""
        (staging / "in").mkdir()
        (staging / "out").mkdir()
        request = hashlib.sha256(options.model_dump_json().encode())
        request.update(hashlib.sha256(image).digest() if image else b"-")
        items: list[tuple[str, str]] = []
        for index, (name, stream) in enumerate(documents):
            digest, size = hashlib.sha256(), 0
            with (staging / "in" / f"{index:06d}.pdf").open("wb") as target:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(
                            f"document {index + 1} ({name}) is larger than {limit} bytes"
                        )
                    digest.update(chunk)
                    target.write(chunk)
                target.flush()
                os.fsync(target.fileno())  # a 201 promises the documents survive a crash
            items.append((safe_filename(name, index), digest.hexdigest()))
            request.update(digest.digest())
        if not items:
            raise InvalidRequest("a batch needs at least one document")
        return items, request.hexdigest()

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

    def claim(self, worker: str, limit: int = 1) -> list[tuple[str, int]]:
        """Take up to `limit` of the oldest pending items, atomically (one statement, so
        no item has two claimants)."""
        with self.registry.session() as session, session.begin():
            rows = session.execute(
                text(
                    "UPDATE batch_items SET state = 'running', worker = :worker, "
                    "claimed_at = :now WHERE (batch_id, idx) IN ("
                    "  SELECT batch_id, idx FROM batch_items WHERE state = 'pending' "
                    "  ORDER BY batch_id, idx LIMIT :limit"
                    ") AND state = 'pending' RETURNING batch_id, idx"
                ).bindparams(bindparam("now", type_=DateTime(timezone=True))),
                {"worker": worker, "now": _now(), "limit": limit},
            ).all()
        return sorted((str(row[0]), int(row[1])) for row in rows)

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

        Recording may lag the signed files safely: a file in ``out/`` is the durable
        fact, and a recovering worker records it without signing again.
        """
        if not outcomes:
            return 0
        recorded = 0
        with self.registry.session() as session, session.begin():
            for outcome in outcomes:
                state = BatchItemState.DONE if outcome.error is None else BatchItemState.FAILED
                result = session.execute(
                    update(BatchItemRecord)
                    .where(
                        BatchItemRecord.batch_id == outcome.batch_id,
                        BatchItemRecord.idx == outcome.index,
                        BatchItemRecord.state == BatchItemState.RUNNING.value,
                        BatchItemRecord.worker == worker,
                    )
                    .values(
                        state=state.value,
                        output_sha256=outcome.output_sha256,
                        error=outcome.error,
                        finished_at=_now(),
                    )
                )
                recorded += int(getattr(result, "rowcount", 0))
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
        """A zip of the signed documents and report.csv, written to `target` as it goes."""
        status = self.status(batch_id)
        if status.state != "finished":
            raise Conflict(
                f"batch {batch_id} is still running: {status.done + status.failed} of "
                f"{status.total} documents finished"
            )
        report = io.StringIO()
        writer = csv.writer(report)
        writer.writerow(
            ["index", "filename", "state", "error", "input_sha256", "output_sha256", "output"]
        )
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
            for item in status.items:
                name = ""
                if item.state is BatchItemState.DONE:
                    name = f"signed/{item.index + 1:05d}-{item.filename}"
                    archive.write(self.output_path(batch_id, item.index), name)
                writer.writerow(
                    [
                        item.index + 1,
                        item.filename,
                        item.state.value,
                        item.error or "",
                        item.input_sha256,
                        item.output_sha256 or "",
                        name,
                    ]
                )
            archive.writestr("report.csv", report.getvalue())
            archive.writestr(
                "batch.json", json.dumps(status.model_dump(mode="json", exclude={"items"}))
            )


def _fsync_directory(path: Path) -> None:
    """Make a rename in `path` durable (POSIX: the directory entry needs its own fsync)."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


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


def write_atomically(path: Path, produce: Callable[[BinaryIO], None]) -> str:
    """Let `produce` write a file, fsync it and rename it into place; returns its SHA-256.

    A reader (or a recovering worker) sees the whole file or none of it, and
    memory stays bounded by what `produce` holds, not by the file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with temporary.open("w+b") as handle:
            produce(handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
        _fsync_directory(path.parent)
    finally:
        temporary.unlink(missing_ok=True)  # only a failed attempt's leftover remains here
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
