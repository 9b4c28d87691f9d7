"""Where a batch's signed documents live: append-only packs, and the results zip read from them.

A worker appends the signed documents of its claims to one *pack* per batch
(``out/<32 hex>.pack``), a file only that worker instance ever writes, and
makes a whole claim durable with one fsync of it (plus, once, one of ``out/``
for the new name).  Only then does the same transaction that marks the items
done record where each one is: pack, offset, size and SHA-256.  The database
row is the fact, the pack is just bytes:

- a worker killed before that transaction leaves an unreferenced tail in its
  pack; its items are handed back, signed again into another pack, and appear
  once in the results, because the results list the rows, not the packs;
- a pack is never truncated, and nothing is written below its end except over
  a document that failed while it was being written (never recorded); a new
  worker, or the same one after a restart, always starts a new pack, so no
  code path needs to find out where another writer's committed data ends.

Items recorded before packs (one file per document, ``out/NNNNNN.pdf``) have
no pack and are read from their own file.  One fsync per claim instead of one
per document is what this buys: on ext4 an fsync costs about as much as
sealing a one-page document.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from signet.common.contracts.signer import BatchItemState, BatchStatus
from signet.signer.batch.durable import GrowingSlice, Slice, fsync_directory, write_digested

_CHUNK = 1024 * 1024
PACK_SUFFIX = ".pack"


@dataclass(frozen=True)
class Packed:
    """A signed document written into a pack: durable once its pack is synced."""

    pack: Pack
    offset: int
    size: int
    sha256: str


class Pack:
    """One worker's append-only results file in one batch's ``out/`` folder.

    Created exclusively under a fresh random name, so it has exactly one writer; the
    worker thread writes documents (`write`) while the committer thread `sync`s the
    documents written before (an fsync covers every completed write).  `end` only
    moves forward, past documents that were written whole.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = f"{uuid.uuid4().hex}{PACK_SUFFIX}"
        folder.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self._fd: int | None = os.open(folder / self.name, flags, 0o600)
        self.end = 0
        #: The pack's directory entry is not durable yet: `out/` needs one fsync.
        self.new = True
        #: Why the pack cannot be trusted any more (a failed fsync); set by the committer.
        self.broken: OSError | None = None

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"pack {self.name} is closed")
        return self._fd

    def write(self, produce: Callable[[BinaryIO], None]) -> Packed:
        """Let `produce` write one document at the end of the pack (seekable, positions
        relative to the document's first byte); returns where it is, not yet durable.

        The SHA-256 comes from the direct writer when it wrote the document
        (`DigestedOutput`), else it is read back (pyHanko seeks back and patches).  When
        `produce` fails, the bytes it wrote are left to be overwritten by the next
        document: they were never recorded, nor synced on purpose.
        """
        window = GrowingSlice(self.fd, self.end)
        sha256 = write_digested(window, produce)
        packed = Packed(self, self.end, window.size, sha256)
        self.end += window.size
        return packed

    def sync(self) -> None:
        """Make every document written so far durable, its directory entry too."""
        if self.broken is not None:
            raise self.broken
        os.fsync(self.fd)
        if self.new:
            fsync_directory(self.folder)
            self.new = False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class StoredOutput:
    """Where one done item's signed document is: a pack slice, or (before packs) a file."""

    index: int
    pack: str | None
    offset: int | None
    size: int | None


def open_output(out: Path, stored: StoredOutput) -> BinaryIO:
    """The signed document, readable from its first byte (the caller closes it)."""
    if stored.pack is None or stored.offset is None or stored.size is None:
        return (out / f"{stored.index:06d}.pdf").open("rb")
    if Path(stored.pack).name != stored.pack or not stored.pack.endswith(PACK_SUFFIX):
        raise ValueError(f"not a pack name: {stored.pack!r}")
    handle = (out / stored.pack).open("rb", buffering=0)
    return _OwnedSlice(handle, stored.offset, stored.size)


class _OwnedSlice(io.BufferedReader):
    """A buffered `Slice` that closes the pack file it reads when it is closed."""

    def __init__(self, handle: BinaryIO, offset: int, size: int) -> None:
        super().__init__(Slice(handle, offset, size), _CHUNK)
        self._handle = handle

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._handle.close()


def write_results(
    status: BatchStatus, outputs: Iterable[StoredOutput], out: Path, target: IO[bytes]
) -> None:
    """A zip of the finished batch's signed documents and report.csv, streamed to `target`.

    One entry per done item, whatever a pack holds beside it (orphan tails of killed
    workers are never listed); each document is copied in 1 MiB chunks, so a batch of
    200 MB documents costs no more memory than one of letters.
    """
    where = {stored.index: stored for stored in outputs}
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
                with open_output(out, where[item.index]) as source:
                    size = source.seek(0, io.SEEK_END)
                    source.seek(0)
                    entry = zipfile.ZipInfo(name, date_time=_zip_time(status))
                    entry.file_size = size
                    with archive.open(entry, "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as dst:
                        while chunk := source.read(_CHUNK):
                            dst.write(chunk)
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


def _zip_time(status: BatchStatus) -> tuple[int, int, int, int, int, int]:
    """Entries carry the batch's finishing time (a pack slice has no mtime of its own)."""
    when = status.finished_at or status.created_at
    return (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second)
