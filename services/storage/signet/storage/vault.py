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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from signet.common.contracts.storage import (
    MINIMUM_RETENTION_YEARS,
    ObjectInfo,
    ObjectKind,
    ScrubFinding,
)
from signet.common.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge, SignetError

CHUNK = 1024 * 1024


class ObjectNotFound(NotFound):
    code = "object_not_found"


class RetentionViolation(Conflict):
    """An attempt to shorten retention or to overwrite: refused, whatever the caller."""

    code = "retention_violation"


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
class Staged:
    """An upload hashed into a temporary file, ready to be stored under its digest."""

    path: Path
    sha256: str
    size: int


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


@contextmanager
def staged_upload(
    stream: BinaryIO, directory: Path, *, limit: int | None = None, durable: bool = True
) -> Iterator[Staged]:
    """Copy `stream` to a temporary file while hashing it: bounded memory for any size.

    `durable` fsyncs the file, for vaults whose object *is* this file; a staging
    copy on its way to S3 need not survive a crash (the upload would fail too).
    """
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="upload-", dir=directory)
    path = Path(name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(handle, "wb") as target:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise PayloadTooLarge(f"the object is larger than {limit} bytes")
                digest.update(chunk)
                target.write(chunk)
            target.flush()
            if durable:
                os.fsync(target.fileno())
        yield Staged(path, digest.hexdigest(), size)
    finally:
        path.unlink(missing_ok=True)


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
        """Store the bytes of `stream`; returns (info, created).  Idempotent by content."""
        ...

    def head(self, sha256: str) -> ObjectInfo: ...

    def open(self, sha256: str) -> Iterator[bytes]:
        """The object's bytes in chunks (raises `ObjectNotFound` before the first chunk)."""
        ...

    def read(self, sha256: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        """Metadata and bytes together, in as few round trips as the store allows."""
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
