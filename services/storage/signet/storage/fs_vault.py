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
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from signet.common.contracts.storage import ObjectInfo, ObjectKind
from signet.storage.vault import (
    CHUNK,
    ObjectNotFound,
    RetentionViolation,
    VaultStatus,
    check_record_name,
    check_sha256,
    now,
    retention_years_checked,
    staged_upload,
    years_from,
)


class FilesystemVault:
    def __init__(self, root: Path, retention_years: int) -> None:
        self.root = root
        self.retention_years = retention_years_checked(retention_years)
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

    def put(
        self,
        stream: BinaryIO,
        *,
        content_type: str,
        kind: ObjectKind,
        envelope_id: str | None = None,
        limit: int | None = None,
    ) -> tuple[ObjectInfo, bool]:
        with staged_upload(stream, self.root / "tmp", limit=limit) as staged:
            data = self._data(staged.sha256)
            data.parent.mkdir(exist_ok=True)
            created_at = now()
            info = ObjectInfo(
                sha256=staged.sha256,
                size=staged.size,
                content_type=content_type,
                kind=kind,
                envelope_id=envelope_id,
                created_at=created_at,
                retain_until=years_from(created_at, self.retention_years),
            )
            with self._locked(staged.sha256):
                if self._meta(staged.sha256).exists():
                    return self.head(staged.sha256), False
                staged.path.chmod(0o444)
                # link(2) never replaces an existing file; if the bytes are there already
                # (metadata lost in a crash), they are the same bytes: keep them
                with contextlib.suppress(FileExistsError):
                    os.link(staged.path, data)
                self._write_meta(info)
        return info, True

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
