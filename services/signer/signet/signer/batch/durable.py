"""Files that survive a crash: written, fsync'd, renamed into place, their folder fsync'd.

`signet seal-batch` (`bulk`) makes every signed file durable before it counts it
as done; this module is how.  A group of files is fsync'd concurrently
(`publish`): one after another each costs a disk flush (~2 ms here), together
they share them (~0.15 ms a file).  Batches of the API append to packs instead
(`batch_results`), one fsync per group, and use `fsync_directory` and `Slice`.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from signet.signer.pades.fastpdf import DigestedOutput

_CHUNK = 1024 * 1024


def fsync_directory(path: Path) -> None:
    """Make a rename in `path` durable (POSIX: the directory entry needs its own fsync)."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@dataclass(frozen=True)
class Unpublished:
    """A file written under a temporary name, not yet durable nor visible (see `publish`)."""

    temporary: Path
    path: Path
    sha256: str


def write_unpublished(path: Path, produce: Callable[[BinaryIO], None]) -> Unpublished:
    """Let `produce` write the future `path` under a temporary name, without fsync.

    Memory stays bounded by what `produce` holds, not by the file.  The SHA-256
    comes from the direct writer when it wrote the file (`DigestedOutput`), else
    it is read back through the same handle (pyHanko seeks back and patches, so
    it cannot be computed on the way).  A failed attempt leaves
    nothing behind; a killed one leaves a ``.tmp`` file that no reader looks at.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        sha256 = write_digested(io.FileIO(temporary, "w+"), produce)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return Unpublished(temporary, path, sha256)


def write_digested(target: io.RawIOBase, produce: Callable[[BinaryIO], None]) -> str:
    """Let `produce` write into `target` (closed afterwards); the SHA-256 of what it wrote.

    The direct writer tells the digest as it writes (`DigestedOutput`); otherwise
    the bytes are read back through the same handle (pyHanko seeks back and
    patches, so it cannot be computed on the way).
    """
    with DigestedOutput(target) as handle:
        produce(handle)
        handle.flush()
        if handle.sha256 is not None:
            return handle.sha256
        handle.seek(0)
        digest = hashlib.sha256()
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
        return digest.hexdigest()


def publish(files: list[Unpublished]) -> list[OSError | None]:
    """Make written files durable and visible, as a group: fsync each, rename each into
    place, then fsync each directory once; per file, None or the error that stopped it.

    A reader (or a recovering worker) sees a whole file or none; a file is durable
    when this returns without an error for it.  The fsyncs are issued concurrently
    from a few threads: ext4 (and XFS) then commit them in one journal transaction,
    ~0.15 ms a file instead of ~2 ms one after the other; with one directory fsync
    per group, that is what makes a group cheaper than its files one by one.
    """
    errors: list[OSError | None] = list(_fsync_pool().map(_fsync_file, files))
    for position, file in enumerate(files):
        if errors[position] is None:
            try:
                file.temporary.replace(file.path)
                continue
            except OSError as exc:
                errors[position] = exc
        file.temporary.unlink(missing_ok=True)
    for directory in {f.path.parent for f, e in zip(files, errors, strict=True) if e is None}:
        try:
            fsync_directory(directory)
        except OSError as exc:
            errors = [
                exc if e is None and f.path.parent == directory else e
                for f, e in zip(files, errors, strict=True)
            ]
    return errors


def _fsync_file(file: Unpublished) -> OSError | None:
    try:
        handle = os.open(file.temporary, os.O_RDONLY)
    except OSError as exc:
        return exc
    try:
        os.fsync(handle)
    except OSError as exc:
        return exc
    finally:
        os.close(handle)
    return None


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _fsync_pool() -> ThreadPoolExecutor:
    """Threads that only wait in fsync (the GIL is released there): shared by the process."""
    global _pool  # one small pool per process, created on first use
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(8, thread_name_prefix="fsync")
        return _pool


def write_atomically(path: Path, produce: Callable[[BinaryIO], None]) -> str:
    """Let `produce` write a file, fsync it and rename it into place; returns its SHA-256.

    The group of one of `write_unpublished` and `publish`.
    """
    written = write_unpublished(path, produce)
    (error,) = publish([written])
    if error is not None:
        raise error
    return written.sha256


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Slice(io.RawIOBase):
    """Bytes [offset, offset + size) of an open file, as a seekable file of their own."""

    def __init__(self, handle: BinaryIO | int, offset: int, size: int) -> None:
        super().__init__()
        self._fd = handle if isinstance(handle, int) else handle.fileno()
        self._offset, self.size, self._position = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self.size - self._position)
        if wanted <= 0:
            return 0
        data = os.pread(self._fd, wanted, self._offset + self._position)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


class GrowingSlice(Slice):
    """A file from `offset` on, as an empty file of its own that grows as it is written
    (read, write, seek; never truncated: what lies before `offset` is never touched)."""

    def __init__(self, fd: int, offset: int) -> None:
        super().__init__(fd, offset, 0)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        written = os.pwrite(self._fd, data, self._offset + self._position)
        self._position += written
        self.size = max(self.size, self._position)
        return written

    def truncate(self, size: int | None = None) -> int:
        raise io.UnsupportedOperation("never truncated")
