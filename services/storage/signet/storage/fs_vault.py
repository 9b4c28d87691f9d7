"""The filesystem vault (the embedded default): retention enforced by this code alone.

A file system has no Object Lock, so every promise is kept here: objects and
records are created with `link(2)`, which fails rather than replace an
existing name; their files are read-only; retention and legal hold live in a
metadata file that is only ever replaced by a later retention date.  There is
no method that removes anything.  (An administrator with root on the machine
can still delete files: the filesystem vault is for trials and single-machine
installations; production uses S3 with Object Lock in COMPLIANCE mode.)
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
from signet.common.contracts.storage import ObjectInfo, ObjectKind
from signet.storage.vault import (
    CHUNK,
    ObjectNotFound,
    RetentionViolation,
    Upload,
    Vault,
    VaultStatus,
    check_record_name,
    check_sha256,
    new_object_info,
    read_in_thread,
    retention_years_checked,
)


class FilesystemVault(Vault):
    def __init__(self, root: Path, retention_years: int) -> None:
        self.root = root
        self.retention_years = retention_years_checked(retention_years)
        self.staging = root / "tmp"
        for sub in ("objects", "records", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    def status(self) -> VaultStatus:
        if not os.access(self.root / "objects", os.W_OK):
            raise ObjectNotFound(f"the vault folder {self.root} is not writable")
        return VaultStatus("filesystem", None, self.retention_years)

    # -- objects ---------------------------------------------------------------------------

    def _data(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    def _meta(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / f"{sha256}.json"

    def put_upload(
        self,
        upload: Upload,
        *,
        content_type: str,
        kind: ObjectKind,
        envelope_id: str | None = None,
    ) -> tuple[ObjectInfo, bool]:
        data = self._data(upload.sha256)
        data.parent.mkdir(exist_ok=True)
        info = new_object_info(upload, content_type, kind, envelope_id, self.retention_years)
        with self._locked(upload.sha256):
            if self._meta(upload.sha256).exists():
                return self.head(upload.sha256), False
            # link(2) never replaces an existing file; if the bytes are there already
            # (metadata lost in a crash), they are the same bytes: keep them
            with self._synced_file(upload) as staged, contextlib.suppress(FileExistsError):
                os.link(staged, data)
            self._write_meta(info)
            _fsync_directory(data.parent)  # the new names survive a crash too
        return info, True

    async def put_upload_async(
        self,
        upload: Upload,
        *,
        content_type: str,
        kind: ObjectKind,
        envelope_id: str | None = None,
    ) -> tuple[ObjectInfo, bool]:
        return await anyio.to_thread.run_sync(
            functools.partial(
                self.put_upload,
                upload,
                content_type=content_type,
                kind=kind,
                envelope_id=envelope_id,
            )
        )

    @contextlib.contextmanager
    def _synced_file(self, upload: Upload) -> Iterator[Path]:
        """The upload as a read-only file on the vault's file system, its bytes fsync'd."""
        if upload.path is not None:  # spilled by the buffer, which removes it afterwards
            with upload.path.open("rb") as handle:
                os.fsync(handle.fileno())
            upload.path.chmod(0o444)
            yield upload.path
            return
        descriptor, name = tempfile.mkstemp(prefix="upload-", dir=self.staging)
        path = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as target:
                target.write(upload.data or b"")
                target.flush()
                os.fsync(target.fileno())
            path.chmod(0o444)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def head(self, sha256: str) -> ObjectInfo:
        try:
            raw = self._meta(check_sha256(sha256)).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {sha256}") from None
        return ObjectInfo.model_validate_json(raw)

    def open(self, sha256: str) -> Iterator[bytes]:
        self.head(sha256)
        handle = self._data(sha256).open("rb")

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(CHUNK):
                    yield chunk

        return chunks()

    def read(self, sha256: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        return self.head(sha256), self.open(sha256)

    async def head_async(self, sha256: str) -> ObjectInfo:
        return await anyio.to_thread.run_sync(self.head, sha256)

    async def read_async(self, sha256: str) -> tuple[ObjectInfo, bytes | AsyncIterator[bytes]]:
        return await read_in_thread(self, sha256)

    def extend_retention(self, sha256: str, until: datetime) -> ObjectInfo:
        with self._locked(check_sha256(sha256)):
            info = self.head(sha256)
            if until < info.retain_until:
                raise RetentionViolation(
                    f"retention of {sha256} ends {info.retain_until:%Y-%m-%d}; it can only "
                    "be extended, never shortened"
                )
            updated = info.model_copy(update={"retain_until": until})
            self._write_meta(updated)
        return updated

    def set_legal_hold(self, sha256: str, on: bool) -> ObjectInfo:
        with self._locked(check_sha256(sha256)):
            updated = self.head(sha256).model_copy(update={"legal_hold": on})
            self._write_meta(updated)
        return updated

    def objects(self) -> Iterator[str]:
        for folder in sorted((self.root / "objects").iterdir()):
            for path in sorted(folder.glob("*.json")):
                yield path.name.removesuffix(".json")

    def _write_meta(self, info: ObjectInfo) -> None:
        target = self._meta(info.sha256)
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(info.model_dump_json(), encoding="utf-8")
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        temporary.replace(target)

    def _locked(self, sha256: str) -> _FileLock:
        return _FileLock(self.root / "tmp" / f"{sha256}.lock")

    # -- records ---------------------------------------------------------------------------

    def put_record(self, name: str, data: bytes) -> None:
        target = self.root / "records" / check_record_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.root / "tmp" / f"record-{os.getpid()}-{id(data):x}"
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.chmod(0o444)
        try:
            os.link(temporary, target)
        except FileExistsError:
            raise RetentionViolation(f"record {name} exists and is immutable") from None
        finally:
            temporary.unlink(missing_ok=True)

    def get_record(self, name: str) -> bytes:
        try:
            return (self.root / "records" / check_record_name(name)).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"no record {name}") from None

    def records(self, prefix: str) -> list[str]:
        base = self.root / "records"
        folder = base / prefix.rstrip("/") if prefix else base
        if not folder.exists():
            return []
        return sorted(str(p.relative_to(base)) for p in folder.rglob("*") if p.is_file())


def _fsync_directory(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class _FileLock:
    """An exclusive lock across processes (several signer/storage workers share a vault)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: BinaryIO | None = None

    def __enter__(self) -> None:
        self._handle = self.path.open("ab")
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        assert self._handle is not None
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()
