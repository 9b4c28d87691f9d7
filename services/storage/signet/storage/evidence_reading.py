"""Reading an evidence package that may be hostile: bounded, streamed, names checked.

`signet verify-evidence` is run by courts, auditors and counterparties on zips
that came from anywhere.  So before a byte is inflated the central directory is
read and refused when it is out of bounds (members, their declared sizes, the
total, the compression ratio) or names a member no package has (``..``, an
absolute path, a backslash, a NUL or any control or bidi character, the same
name twice); then every member is read in chunks, counted against its bound, the
total and its ratio *while* it inflates, since a directory can lie about sizes
(`zipfile` also stops at the declared size and checks the CRC).  Hashes are
computed as the bytes stream, never over a whole member in memory.

Also here: the check that a package holds *all* of its envelope's events up to
its last, from the `previous` leaf hash each event names (`signet.storage.ledger`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from signet.common.contracts.storage import printable, unsafe_character
from signet.storage.merkle import leaf_hash

#: Members of a package: one per document and per ledger entry, plus a dozen.
MAX_MEMBERS = 100_000
#: A document (the vault's own default limit is far below).
MAX_DOCUMENT_BYTES = 4 * 1024**3
#: The manifest and the proofs grow with an envelope's events (about 2 KB each).
MAX_INDEX_BYTES = 64 * 1024**2
#: Everything else: a ledger leaf (at most 128 KiB), the tree head, a certificate, a CRL.
MAX_SMALL_BYTES = 8 * 1024**2
#: All members together, inflated.
MAX_TOTAL_BYTES = 16 * 1024**3
#: Inflated over stored bytes, past the first `RATIO_FREE_BYTES` of a member: what a
#: package holds (PDFs, JSON, DER) compresses far less; a zip bomb, thousands of times.
MAX_RATIO = 200
RATIO_FREE_BYTES = 1024 * 1024
#: The longest member name (ours are under 100 characters).
MAX_NAME = 255
_CHUNK = 1024 * 1024
_ENTRY = re.compile(r"^ledger/entries/([0-9]{1,12})\.json$")


class PackageRefused(Exception):
    """The package cannot be checked: the reason, safe to print."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = printable(detail)


def member_limit(name: str) -> int:
    if name.startswith("documents/"):
        return MAX_DOCUMENT_BYTES
    if name in ("manifest.json", "ledger/proofs.json"):
        return MAX_INDEX_BYTES
    return MAX_SMALL_BYTES


def ratio_limit(compressed: int) -> int:
    """The most bytes a member stored in `compressed` bytes may inflate to."""
    return RATIO_FREE_BYTES + MAX_RATIO * compressed


def crafted(name: str) -> str | None:
    """Why `name` is no member a package has (None when it is an ordinary relative path)."""
    if "\x00" in name:
        return "a NUL character"
    found = unsafe_character(name)
    if found is not None:
        return f"the control or formatting character {found}"
    if unicodedata.normalize("NFC", name) != name:
        return "characters not in Unicode normal form C (a look-alike of another name)"
    if "\\" in name:
        return "a backslash"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "a path outside the package or an empty segment"
    if len(name) > MAX_NAME:
        return f"more than {MAX_NAME} characters"
    return None


def entry_index(name: str) -> int | None:
    """The ledger index a member ``ledger/entries/<n>.json`` holds; None for other names."""
    match = _ENTRY.match(name)
    return int(match.group(1)) if match else None


class PackageReader:
    """A zip opened for checking, refused (`PackageRefused`) as soon as it is out of bounds."""

    def __init__(self, package: Path | IO[bytes]) -> None:
        try:
            self._zip = zipfile.ZipFile(package)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
            raise PackageRefused(f"not a readable zip: {exc}") from None
        if len(infos) > MAX_MEMBERS:
            raise PackageRefused(f"{len(infos)} members; a package has at most {MAX_MEMBERS}")
        self.names: set[str] = set()
        self._compressed: dict[str, int] = {}
        declared = 0
        for info in infos:
            name = info.filename
            shown = printable(repr(name))[:300]
            why = crafted(name)
            if why is not None:
                raise PackageRefused(f"member name {shown} has {why}")
            if name in self.names:
                raise PackageRefused(f"member {shown} appears twice")
            if info.is_dir():
                raise PackageRefused(f"member {shown} is a directory; a package has none")
            if info.file_size > member_limit(name):
                raise PackageRefused(
                    f"member {name} declares {info.file_size} bytes; at most {member_limit(name)}"
                )
            if info.file_size > ratio_limit(info.compress_size):
                raise PackageRefused(
                    f"member {name} declares {info.file_size} bytes stored in "
                    f"{info.compress_size}: compressed more than {MAX_RATIO} to 1 (a zip bomb?)"
                )
            self.names.add(name)
            self._compressed[name] = info.compress_size
            declared += info.file_size
        folded: dict[str, str] = {}
        for name in sorted(self.names):
            other = folded.setdefault(name.casefold(), name)
            if other != name:  # one file on a case-insensitive disk, two in the zip
                raise PackageRefused(f"members {other!r} and {name!r} differ only in case")
        if declared > MAX_TOTAL_BYTES:
            raise PackageRefused(f"members declare {declared} bytes; at most {MAX_TOTAL_BYTES}")
        self._budget = MAX_TOTAL_BYTES

    def close(self) -> None:
        self._zip.close()

    def chunks(self, name: str) -> Iterator[bytes]:
        """The member's bytes as they inflate, each counted against its bounds and the total."""
        limit = min(member_limit(name), ratio_limit(self._compressed[name]))
        read = 0
        try:
            with self._zip.open(name) as member:
                while chunk := member.read(_CHUNK):
                    read += len(chunk)
                    self._budget -= len(chunk)
                    if read > limit:
                        raise PackageRefused(f"member {name} inflates past its bound ({limit})")
                    if self._budget < 0:
                        raise PackageRefused(f"the members inflate past {MAX_TOTAL_BYTES} bytes")
                    yield chunk
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise PackageRefused(f"member {name} is unreadable: {exc}") from None

    def read(self, name: str) -> bytes:
        """A member whole (b"" when absent): only the small ones are read so."""
        return b"".join(self.chunks(name)) if name in self.names else b""

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks(name):
            digest.update(chunk)
        return digest.hexdigest()


@dataclass(frozen=True)
class ChainLink:
    """What the completeness check needs of one entry."""

    index: int
    leaf: bytes
    event: dict[str, Any]


def chain_problems(links: list[ChainLink]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of an envelope's entries as a chain of `previous` hashes.

    Each event names the leaf hash of the envelope's event before it (null for its
    first), so an entry left out of the package breaks the chain where it was.
    Entries from before the chain (no `previous` field) are accepted with a warning:
    what precedes them cannot be proven complete.  (Events after the last one in
    the package are not covered by the chain: the package's signed manifest is.)
    """
    problems: list[str] = []
    warnings: list[str] = []
    by_hash = {leaf_hash(link.leaf).hex(): link.index for link in links}
    before: ChainLink | None = None
    for link in sorted(links, key=lambda link: link.index):
        if "previous" not in link.event:
            warnings.append(f"entry {link.index} predates the chained ledger (no 'previous')")
        else:
            previous = link.event["previous"]
            expected = leaf_hash(before.leaf).hex() if before is not None else None
            if previous != expected:
                if previous is None:
                    problems.append(
                        f"entry {link.index} claims to be the envelope's first event, after "
                        f"entry {before.index if before else '?'}"
                    )
                elif not isinstance(previous, str) or previous not in by_hash:
                    problems.append(
                        f"the envelope's event before entry {link.index} (leaf hash "
                        f"{printable(str(previous))[:64]}) is missing from the package"
                    )
                else:
                    problems.append(
                        f"entry {link.index} names entry {by_hash[previous]} as its previous "
                        "event, not the one before it"
                    )
        before = link
    return problems, warnings
