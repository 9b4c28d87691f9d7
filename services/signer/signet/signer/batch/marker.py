"""The batch directory's store marker: a small JSON file naming the store (a random id).

`BatchStoreGuard` compares it with the id the database recorded; this module only reads
and writes the file, atomically and durably (replicas sharing a fresh volume agree on
one marker), and re-reads it only when the file changed (a stat per check).
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from signet.signer.batch.durable import fsync_directory

#: The marker file in the batch directory (JSON: ``store_id``, ``created_at``).
MARKER = ".signet-batch-store"


class BadMarker(ValueError):
    """The marker file exists but names no store (empty, truncated, not a JSON object)."""


class StoreMarker:
    """The marker file of one batch directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._path = str(directory / MARKER)
        self._cache: tuple[tuple[int, int, int, int], str | None] | None = None

    def now(self) -> str | None:
        """The marker's store id, read again only when the file is not the one read last
        (another device, inode, size or mtime: a volume unmounted or replaced, a marker
        rewritten): a stat per check, not a read (a worker checks before every document)."""
        try:
            found = os.stat(self._path)  # noqa: PTH116 - a str path: no pathlib per check
        except FileNotFoundError:
            return None
        key = (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        marker = self.read()
        self._cache = (key, marker)
        return marker

    def read(self) -> str | None:
        try:
            raw = (self.directory / MARKER).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as exc:
            raise BadMarker("not UTF-8 text") from exc
        if not raw.strip():
            raise BadMarker("empty")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise BadMarker("not JSON") from exc
        store_id = body.get("store_id") if isinstance(body, dict) else None
        if not isinstance(store_id, str) or not store_id:
            raise BadMarker("names no store_id")
        return store_id

    def write(self, *, replace: bool = False) -> str:
        """Create the marker if absent, atomically (replicas sharing a fresh volume: one
        marker wins, every replica returns its id); durable before it is recorded, so a
        crash in between leaves a marker the next start adopts, never a record without one.
        With `replace` (adopt over an unreadable marker), the marker is replaced."""
        self.directory.mkdir(parents=True, exist_ok=True)
        store_id = secrets.token_hex(16)
        body = json.dumps({"store_id": store_id, "created_at": datetime.now(UTC).isoformat()})
        temporary = self.directory / f"{MARKER}.{store_id}.tmp"
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            if replace:
                temporary.replace(self.directory / MARKER)
            else:
                os.link(temporary, self.directory / MARKER)  # fails if one exists
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links (some SMB or FUSE drivers)
            self._create_exclusively(body)
        finally:
            temporary.unlink(missing_ok=True)
        fsync_directory(self.directory)
        winner = self.read()
        assert winner is not None
        return winner

    def _create_exclusively(self, body: str) -> None:
        """The marker by O_EXCL: a replica reading it before it is written sees an empty
        marker (`BAD_MARKER`, judged again at its next check), never a second marker."""
        try:
            handle = os.open(self.directory / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        try:
            os.write(handle, body.encode())
            os.fsync(handle)
        finally:
            os.close(handle)
