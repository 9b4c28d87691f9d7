"""The vault: content-addressed, write-once, retained storage of documents and evidence.

Two implementations keep the same promises: `FilesystemVault` (the embedded
default) and `S3Vault` (MinIO in production).  Neither has a delete method, and
none may be added: nothing is removed before its retention ends, by any code
path, and the expiry of old objects is the object store's own lifecycle
business, never this code's.

Objects are addressed by the SHA-256 of their bytes.  Putting the same bytes
again is a no-op that returns the stored object (first write wins, metadata
included).  *Records* are the second namespace: immutable byte strings under
a name (the ledger's segments and tree heads), written once and never
replaced, so that the ledger can be rebuilt in order from the vault alone.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio.to_thread
from signet.common.contracts.storage import (
    MINIMUM_RETENTION_YEARS,
    ObjectInfo,
    ObjectKind,
    ScrubFinding,
)
from signet.common.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge, SignetError

#: Read and write size of streamed bytes (files, S3 responses, HTTP bodies).
CHUNK = 1024 * 1024
#: Uploads up to this size are hashed and stored from memory (on S3, one PUT from
#: that buffer); larger ones are spilled to a staging file as they arrive.  The bound
#: of an upload's memory, before the S3 vault's multipart parts (`PART_SIZE`).
IN_MEMORY = 16 * 1024 * 1024


class ObjectNotFound(NotFound):
    code = "object_not_found"


class RetentionViolation(Conflict):
    """An attempt to shorten retention or to overwrite: refused, whatever the caller."""

    code = "retention_violation"


class DigestMismatch(InvalidRequest):
    """The bytes received do not hash to the SHA-256 the client announced."""

    code = "digest_mismatch"


class VaultMisconfigured(SignetError):
    """The object store does not keep the promises (no Object Lock, retention too short)."""

    status_code = 503
    code = "vault_misconfigured"


@dataclass(frozen=True)
class VaultStatus:
    backend: str
    object_lock: str | None
    retention_years: int


@dataclass(frozen=True)
class Upload:
    """An upload received and hashed by `UploadBuffer`, ready to be stored under its digest.

    Exactly one of `data` (an upload of at most `IN_MEMORY` bytes) and `path` (a
    larger one, spilled to a staging file that the buffer owns and removes) is set.
    """

    sha256: str
    size: int
    data: bytes | None = None
    path: Path | None = None


def retention_years_checked(years: int) -> int:
    if years < MINIMUM_RETENTION_YEARS:
        raise VaultMisconfigured(
            f"retention of {years} years is below the statutory minimum of "
            f"{MINIMUM_RETENTION_YEARS} years"
        )
    return years


def years_from(moment: datetime, years: int) -> datetime:
    """`moment` plus whole years (29 February becomes 28 February)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def new_object_info(
    upload: Upload, content_type: str, kind: ObjectKind, envelope_id: str | None, years: int
) -> ObjectInfo:
    """The info of an object stored now, retained `years` from now (either vault)."""
    created_at = now()
    return ObjectInfo(
        sha256=upload.sha256,
        size=upload.size,
        content_type=content_type,
        kind=kind,
        envelope_id=envelope_id,
        created_at=created_at,
        retain_until=years_from(created_at, years),
    )


class UploadBuffer:
    """Receives an upload piece by piece and hashes it, so that any size costs bounded memory.

    Up to `in_memory` bytes stay in memory: a document of a few megabytes is then
    hashed and sent to the store from one buffer, without touching the disk (the
    S3 client would read a part of that size into memory anyway).  Past that, the
    pieces go to a temporary file under `directory` (on the vault's own file
    system, so the filesystem vault can `link(2)` it into place); the buffer
    removes the file on `close`.  The digest is computed here, by the server, as
    the bytes arrive: an object's name is never taken from the client.
    """

    def __init__(
        self, directory: Path, *, limit: int | None = None, in_memory: int = IN_MEMORY
    ) -> None:
        self.directory = directory
        self.limit = limit
        self.in_memory = in_memory
        self.size = 0
        self._digest = hashlib.sha256()
        self._pieces: list[bytes] = []
        self._file: BinaryIO | None = None
        self._path: Path | None = None

    def __enter__(self) -> UploadBuffer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def check_size(self, size: int) -> None:
        """Refuse (413) as soon as the upload is known to exceed the limit."""
        if self.limit is not None and size > self.limit:
            raise PayloadTooLarge(f"the object is larger than the limit of {self.limit} bytes")

    def write(self, pieces: Iterable[bytes]) -> None:
        """Hash and keep `pieces` (blocking: call it off the event loop for large pieces)."""
        for piece in pieces:
            self.check_size(self.size + len(piece))
            self._digest.update(piece)
            self.size += len(piece)
            if self._file is None and self.size > self.in_memory:
                self._spill()
            if self._file is not None:
                self._file.write(piece)
            else:
                self._pieces.append(piece)

    def copy_from(self, stream: BinaryIO) -> None:
        while piece := stream.read(CHUNK):
            self.write((piece,))

    def _spill(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix="upload-", dir=self.directory)
        self._path = Path(name)
        self._file = os.fdopen(handle, "wb")
        for piece in self._pieces:
            self._file.write(piece)
        self._pieces.clear()

    def finish(self) -> Upload:
        """The upload, hashed.  A spilled file is flushed, not fsync'd: the filesystem
        vault, whose object *is* that file, syncs it; a staging copy on its way to S3
        need not survive a crash (the upload would fail with it)."""
        digest = self._digest.hexdigest()
        if self._file is None:
            data = b"".join(self._pieces)
            self._pieces.clear()  # the pieces go now, not when the request ends
            return Upload(digest, self.size, data=data)
        self._file.close()
        return Upload(digest, self.size, path=self._path)

    def close(self) -> None:
        self._pieces.clear()
        if self._file is not None:
            self._file.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


def received(stream: BinaryIO, directory: Path, *, limit: int | None = None) -> UploadBuffer:
    """`stream` read into a new `UploadBuffer` (the caller closes it)."""
    buffer = UploadBuffer(directory, limit=limit)
    try:
        buffer.copy_from(stream)
    except BaseException:
        buffer.close()
        raise
    return buffer


def check_sha256(value: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidRequest("an object is named by its SHA-256 in lowercase hex")
    return value


def check_record_name(name: str) -> str:
    parts = name.split("/")
    if not name or any(not p or p in (".", "..") for p in parts) or len(name) > 200:
        raise InvalidRequest(f"bad record name {name!r}")
    if not all(c.isalnum() or c in "-_./" for c in name):
        raise InvalidRequest(f"bad record name {name!r}")
    return name


class Vault(Protocol):
    """What every vault offers.  Note what is missing: delete, overwrite, shorten."""

    retention_years: int
    #: Where `UploadBuffer`s of this vault spill large uploads.
    staging: Path

    def status(self) -> VaultStatus:
        """Reachability and the store's own retention guarantees (raises if unusable)."""
        ...

    def put(
        self,
        stream: BinaryIO,
        *,
        content_type: str,
        kind: ObjectKind,
        envelope_id: str | None = None,
        limit: int | None = None,
    ) -> tuple[ObjectInfo, bool]:
        """Store the bytes of `stream`; returns (info, created).  Idempotent by content.

        Shared by every vault (they subclass this protocol): receive and hash the
        stream on `staging`, then `put_upload`.
        """
        with received(stream, self.staging, limit=limit) as buffer:
            return self.put_upload(
                buffer.finish(), content_type=content_type, kind=kind, envelope_id=envelope_id
            )

    def put_upload(
        self,
        upload: Upload,
        *,
        content_type: str,
        kind: ObjectKind,
        envelope_id: str | None = None,
    ) -> tuple[ObjectInfo, bool]:
        """Store an upload received by an `UploadBuffer` on `staging`; as `put`.

        The digest is the buffer's, computed by this process from the bytes, so the
        object is stored under the hash of what was received.  Returns only once the
        object is durable (fsync'd, or acknowledged by the object store).
        """
        ...

    async def put_upload_async(
        self,
        upload: Upload,
        *,
        content_type: str,
        kind: ObjectKind,
        envelope_id: str | None = None,
    ) -> tuple[ObjectInfo, bool]:
        """`put_upload` for the API's event loop (in a worker thread where the vault blocks)."""
        ...

    def head(self, sha256: str) -> ObjectInfo: ...

    async def head_async(self, sha256: str) -> ObjectInfo: ...

    def open(self, sha256: str) -> Iterator[bytes]:
        """The object's bytes in chunks (raises `ObjectNotFound` before the first chunk)."""
        ...

    def read(self, sha256: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        """Metadata and bytes together, in as few round trips as the store allows."""
        ...

    async def read_async(self, sha256: str) -> tuple[ObjectInfo, bytes | AsyncIterator[bytes]]:
        """`read` for the API's event loop: the whole object (bytes) when it is at most
        `CHUNK` bytes, else its chunks; raises `ObjectNotFound` before any byte."""
        ...

    def extend_retention(self, sha256: str, until: datetime) -> ObjectInfo: ...

    def set_legal_hold(self, sha256: str, on: bool) -> ObjectInfo: ...

    def objects(self) -> Iterator[str]:
        """The SHA-256 of every object (for the scrubber)."""
        ...

    def put_record(self, name: str, data: bytes) -> None:
        """Write an immutable named record; an existing name is a `RetentionViolation`."""
        ...

    def get_record(self, name: str) -> bytes: ...

    def records(self, prefix: str) -> list[str]:
        """Names of the records under `prefix`, sorted."""
        ...


async def read_in_thread(
    vault: Vault, sha256: str
) -> tuple[ObjectInfo, bytes | AsyncIterator[bytes]]:
    """`Vault.read_async` for a vault whose reads block: the open and the first chunk in
    one worker-thread call, each further chunk in another."""

    def open_first() -> tuple[ObjectInfo, bytes, Iterator[bytes] | None]:
        info, chunks = vault.read(sha256)
        first = next(chunks, b"")
        if len(first) < info.size:
            return info, first, chunks
        return info, first + b"".join(chunks), None  # reads the end: the file is closed

    info, first, chunks = await anyio.to_thread.run_sync(open_first)
    if chunks is None:
        return info, first
    return info, _rest_in_thread(first, chunks)


async def _rest_in_thread(first: bytes, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        while chunk := await anyio.to_thread.run_sync(next, chunks, b""):
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def scrub(vault: Vault) -> Iterator[ScrubFinding]:
    """Re-read every object and report those whose bytes no longer match their name."""
    for sha256 in vault.objects():
        digest = hashlib.sha256()
        try:
            for chunk in vault.open(sha256):
                digest.update(chunk)
        except SignetError as exc:
            yield ScrubFinding(sha256=sha256, problem=f"unreadable: {exc.detail}")
            continue
        if digest.hexdigest() != sha256:
            yield ScrubFinding(sha256=sha256, problem=f"content hash is now {digest.hexdigest()}")
