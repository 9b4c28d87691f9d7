"""The evidence ledger: an append-only Merkle log of what happened to every envelope.

Leaves are canonical JSON (sorted keys, no whitespace, UTF-8) of one event,
with its index and the time the ledger accepted it.  Appends are group
committed: concurrent appends wait together while one *segment* record (one
JSON line per leaf) is written to the vault, and each is acknowledged only
after its segment is stored; the Merkle tree and the indexes are then
updated.  So a crash can lose an event that was never acknowledged, never one
that was.  Segments and signed tree heads are vault records, retained and
immutable like documents; on start the ledger reads them back in order and
rebuilds the same tree.

The ledger has exactly one writer per vault.  A second writer would find its
segment name taken (records are write-once) and stop appending rather than
fork the log.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from signet.common.contracts.storage import (
    ConsistencyProof,
    InclusionProof,
    LedgerEventIn,
    LedgerReceipt,
    TreeHead,
)
from signet.common.errors import Conflict, NotFound, ServiceUnavailable
from signet.storage.merkle import MerkleTree, leaf_hash
from signet.storage.vault import Vault

log = logging.getLogger(__name__)

SEGMENTS = "ledger/segments"
HEADS = "ledger/heads"
_MAX_GROUP = 4096


def canonical_json(value: Any) -> bytes:
    """One byte string per value: what is hashed, signed and shipped in evidence packages."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def tree_head_payload(head: TreeHead) -> bytes:
    """The signed part of a tree head (everything but the signature and its evidence)."""
    return canonical_json(
        {
            "log_id": head.log_id,
            "root_hash": head.root_hash,
            "time": head.time.isoformat(),
            "tree_size": head.tree_size,
        }
    )


class TreeHeadSigner(Protocol):
    """Signs and timestamps tree heads (the signer service, over HTTP)."""

    def sign_digest(self, digest: bytes) -> tuple[bytes, str, list[str]]:
        """(DER signature, algorithm name, PEM chain with the signing certificate first)."""
        ...

    def timestamp(self, digest: bytes) -> bytes:
        """A DER RFC 3161 TimeStampToken over the SHA-256 `digest`."""
        ...


@dataclass
class _Pending:
    leaf: bytes
    index: int
    envelope_id: str
    time: datetime
    future: Future[LedgerReceipt]


class Ledger:
    def __init__(self, vault: Vault, *, log_id: str = "signet-ledger") -> None:
        self.vault = vault
        self.log_id = log_id
        self.tree = MerkleTree()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[_Pending] = []
        self._next_index = 0
        self._segment_starts: list[int] = []
        self._segment_names: list[str] = []
        self._by_envelope: dict[str, list[int]] = {}
        self._segment_cache: OrderedDict[str, list[bytes]] = OrderedDict()
        self._appended_at: tuple[int, datetime] | None = None
        self._failed: str | None = None
        self._closing = False
        self._rebuild()
        self._heads_lock = threading.Lock()
        self._latest_head: TreeHead | None = self._read_latest_head()
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
        self._writer.start()

    # -- rebuilding ------------------------------------------------------------------------

    def _rebuild(self) -> None:
        for name in self.vault.records(SEGMENTS):
            lines = self.vault.get_record(name).splitlines()
            first = int(name.rsplit("/", 1)[1].split(".")[0])
            if first != len(self.tree):
                raise ServiceUnavailable(
                    f"ledger segment {name} starts at {first}, expected {len(self.tree)}: "
                    "the log in the vault has a gap"
                )
            self._index_segment(name, first, lines)
        self._next_index = len(self.tree)
        log.info("ledger rebuilt from the vault: %d leaves", len(self.tree))

    def _index_segment(self, name: str, first: int, lines: list[bytes]) -> None:
        self._segment_starts.append(first)
        self._segment_names.append(name)
        for offset, line in enumerate(lines):
            self.tree.append(leaf_hash(line))
            envelope = json.loads(line)["envelope_id"]
            self._by_envelope.setdefault(envelope, []).append(first + offset)

    # -- appending -------------------------------------------------------------------------

    def append(self, event: LedgerEventIn) -> Future[LedgerReceipt]:
        """Queue an event; the future resolves once it is durably in the vault."""
        future: Future[LedgerReceipt] = Future()
        with self._lock:
            if self._failed:
                raise ServiceUnavailable(f"the ledger stopped appending: {self._failed}")
            index = self._next_index
            self._next_index += 1
            accepted = datetime.now(UTC)
            leaf = canonical_json(
                {
                    "index": index,
                    "time": accepted.isoformat(),
                    **event.model_dump(mode="json"),
                }
            )
            self._pending.append(_Pending(leaf, index, event.envelope_id, accepted, future))
            self._wake.notify()
        return future

    def append_sync(self, event: LedgerEventIn, timeout: float = 30) -> LedgerReceipt:
        return self.append(event).result(timeout)

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._wake.wait()
                if not self._pending and self._closing:
                    return
                group, self._pending = self._pending[:_MAX_GROUP], self._pending[_MAX_GROUP:]
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        first = group[0].index
        name = f"{SEGMENTS}/{first:012d}.jsonl"
        try:
            self.vault.put_record(name, b"\n".join(p.leaf for p in group) + b"\n")
        except Exception as exc:  # nothing in this group was acknowledged: fail them all
            reason = f"writing {name} failed: {exc}"
            log.error("ledger: %s", reason)
            with self._lock:
                self._failed = reason
                stranded, self._pending = self._pending, []
            for pending in (*group, *stranded):
                pending.future.set_exception(ServiceUnavailable(reason))
            return
        with self._lock:
            self._segment_starts.append(first)
            self._segment_names.append(name)
            self._segment_cache[name] = [p.leaf for p in group]
            self._trim_cache()
            receipts = []
            for pending in group:
                hashed = leaf_hash(pending.leaf)
                self.tree.append(hashed)
                self._by_envelope.setdefault(pending.envelope_id, []).append(pending.index)
                receipts.append(
                    (
                        pending,
                        LedgerReceipt(
                            index=pending.index, leaf_hash=hashed.hex(), time=pending.time
                        ),
                    )
                )
        for pending, receipt in receipts:
            pending.future.set_result(receipt)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._writer.join(timeout=30)

    # -- reading ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.tree)

    def leaf(self, index: int) -> bytes:
        with self._lock:
            if not 0 <= index < len(self.tree):
                raise NotFound(f"no ledger entry {index}")
            position = bisect.bisect_right(self._segment_starts, index) - 1
            name, first = self._segment_names[position], self._segment_starts[position]
            lines = self._segment_cache.get(name)
        if lines is None:
            lines = self.vault.get_record(name).splitlines()
            with self._lock:
                self._segment_cache[name] = lines
                self._trim_cache()
        return lines[index - first]

    def appended_at(self, index: int) -> datetime:
        """When the ledger accepted entry `index` (the time recorded in its leaf).

        Storage readiness asks this for the oldest entry no signed tree head covers
        yet, at every probe: the answer is remembered (one index at a time).
        """
        remembered = self._appended_at
        if remembered is not None and remembered[0] == index:
            return remembered[1]
        accepted = datetime.fromisoformat(json.loads(self.leaf(index))["time"])
        self._appended_at = (index, accepted)
        return accepted

    def _trim_cache(self) -> None:
        while len(self._segment_cache) > 64:
            self._segment_cache.popitem(last=False)

    def envelope_indexes(self, envelope_id: str) -> list[int]:
        with self._lock:
            return list(self._by_envelope.get(envelope_id, []))

    def inclusion(self, index: int, tree_size: int | None = None) -> InclusionProof:
        with self._lock:
            size = len(self.tree) if tree_size is None else tree_size
            if not 0 <= index < size <= len(self.tree):
                raise NotFound(f"no ledger entry {index} in a tree of {size}")
            path = self.tree.inclusion_proof(index, size)
            leaf = self.tree.leaf(index)
        return InclusionProof(
            leaf_index=index,
            tree_size=size,
            leaf_hash=leaf.hex(),
            audit_path=[p.hex() for p in path],
        )

    def consistency(self, first: int, second: int | None = None) -> ConsistencyProof:
        with self._lock:
            second = len(self.tree) if second is None else second
            if not 0 <= first <= second <= len(self.tree):
                raise NotFound(f"no consistency proof from {first} to {second}")
            path = self.tree.consistency_proof(first, second)
        return ConsistencyProof(first=first, second=second, path=[p.hex() for p in path])

    def root(self, tree_size: int | None = None) -> bytes:
        with self._lock:
            return self.tree.root(tree_size)

    # -- tree heads ------------------------------------------------------------------------

    def latest_head(self) -> TreeHead | None:
        return self._latest_head

    def publish_head(self, signer: TreeHeadSigner | None) -> TreeHead:
        """Sign, timestamp and store a head for the current size (once per size)."""
        with self._heads_lock:
            with self._lock:
                size = len(self.tree)
                root = self.tree.root(size)
            latest = self._latest_head
            if latest is not None and latest.tree_size == size and latest.signature:
                return latest
            head = TreeHead(
                tree_size=size,
                root_hash=root.hex(),
                time=datetime.now(UTC).replace(microsecond=0),
                log_id=self.log_id,
            )
            if signer is None:  # an unsigned head is an answer, never a record
                return head
            digest = hashlib.sha256(tree_head_payload(head)).digest()
            signature, algorithm, chain = signer.sign_digest(digest)
            token = signer.timestamp(digest)
            head = head.model_copy(
                update={
                    "signature": base64.b64encode(signature).decode(),
                    "signature_algorithm": algorithm,
                    "timestamp_token": base64.b64encode(token).decode(),
                    "certificate_chain": chain,
                }
            )
            name = f"{HEADS}/{size:012d}.json"
            try:
                self.vault.put_record(name, head.model_dump_json().encode())
            except Conflict:  # another process signed this size first: its head stands
                head = TreeHead.model_validate_json(self.vault.get_record(name))
            self._latest_head = head
            return head

    def _read_latest_head(self) -> TreeHead | None:
        names = self.vault.records(HEADS)
        for name in reversed(names):
            head = TreeHead.model_validate_json(self.vault.get_record(name))
            if head.tree_size <= len(self.tree):
                return head
        return None
