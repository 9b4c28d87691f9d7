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

An event gets its index only once it is validated and its leaf encoded: an
event that fails either is refused (422) and takes nothing, so the index in
every leaf is its position in the tree, always.  Each leaf also names, as
`previous`, the leaf hash of the same envelope's previous event (null for its
first), so an evidence package that leaves one of an envelope's events out fails
verification.  A log found with a gap when it is rebuilt stays closed until the
operator records a signed gap marker (`signet.storage.ledger_gaps`).

An event may carry a caller-chosen `event_id`: appending it again (a retry whose
answer was lost) with the same content answers the first receipt and appends
nothing; with other content it is refused (409 `event_conflict`).  The id is kept
in the leaf, so the map of ids is rebuilt with the tree on every start.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from signet.common.contracts.storage import (
    ConsistencyProof,
    InclusionProof,
    LedgerEventIn,
    LedgerReceipt,
    TreeHead,
)
from signet.common.errors import NotFound, ServiceUnavailable
from signet.storage.leaves import (
    EventConflict,
    InvalidEvent,
    canonical_json,
    checked_event,
    content_digest,
    encode_leaf,
    tree_head_payload,
)
from signet.storage.ledger_gaps import GapMarker, marked_gap, read_markers
from signet.storage.ledger_heads import (
    TreeHeadSigner,
    read_latest_head,
    signed_head,
    store_head,
)
from signet.storage.ledger_segments import SegmentIndex
from signet.storage.merkle import MerkleTree, leaf_hash
from signet.storage.vault import Vault

log = logging.getLogger(__name__)

__all__ = [
    "EventConflict",
    "InvalidEvent",
    "Ledger",
    "TreeHeadSigner",
    "canonical_json",
    "tree_head_payload",
]

SEGMENTS = "ledger/segments"
_MAX_GROUP = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _KnownEvent(NamedTuple):
    """What an idempotent append needs of an event with an id (no I/O, a few dozen bytes)."""

    digest: bytes
    position: int
    #: The time in its leaf, in microseconds since the epoch.
    micros: int


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass
class _Pending:
    leaf: bytes
    hashed: bytes
    index: int
    envelope_id: str
    time: datetime
    future: Future[LedgerReceipt]
    event_id: str | None = None


class Ledger:
    def __init__(self, vault: Vault, *, log_id: str = "signet-ledger") -> None:
        self.vault = vault
        self.log_id = log_id
        self.tree = MerkleTree()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[_Pending] = []
        self._next_index = 0
        # Runs of the tree that one segment's consecutive lines fill: start position,
        # segment name, line of the start (a segment split by a marked gap is two runs).
        self._segments = SegmentIndex()
        self._gap_leaves: dict[int, bytes] = {}
        self._by_envelope: dict[str, list[int]] = {}
        #: The leaf hash of each envelope's latest event, acknowledged or pending.
        self._last_leaf: dict[str, bytes] = {}
        #: Every event id in the log (and pending), and the futures of those pending.
        self._events: dict[str, _KnownEvent] = {}
        self._pending_ids: dict[str, Future[LedgerReceipt]] = {}
        #: Signed heads in the vault that do not match the rebuilt tree (after a gap marker).
        self.superseded_heads: list[str] = []
        self._appended_at: tuple[int, datetime] | None = None
        self._failed: str | None = None
        self._closing = False
        self._rebuild()
        self._heads_lock = threading.Lock()
        self._latest_head, superseded = read_latest_head(self.vault, self.tree)
        self.superseded_heads.extend(superseded)
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
        self._writer.start()

    # -- rebuilding ------------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Read every segment back in order; each leaf must claim its own position.

        A leaf claiming a later position leaves a gap: one the operator marked
        (`ledger_gaps`) is filled with its gap leaves, any other keeps the ledger
        closed (raised here, at every attempt: readiness reports it).  A leaf claiming
        an earlier position means a forked or corrupted log and cannot be marked.
        """
        markers = read_markers(self.vault)
        for name in self.vault.records(SEGMENTS):
            lines = self.vault.get_record(name).splitlines()
            run_open = False
            for offset, line in enumerate(lines):
                event = json.loads(line)
                claimed = event["index"]
                if claimed > len(self.tree):
                    self._fill_gap(markers, claimed, f"{name} line {offset + 1}")
                    run_open = False
                elif claimed < len(self.tree):
                    raise ServiceUnavailable(
                        f"ledger segment {name} line {offset + 1} claims index {claimed} "
                        f"where the log is at {len(self.tree)}: the log is forked or corrupt"
                    )
                if not run_open:
                    self._segments.add_run(len(self.tree), name, offset)
                    run_open = True
                hashed = leaf_hash(line)
                self.tree.append(hashed)
                envelope = event["envelope_id"]
                self._by_envelope.setdefault(envelope, []).append(claimed)
                self._last_leaf[envelope] = hashed
                self._remember_id(event, claimed)
        self._next_index = len(self.tree)
        log.info("ledger rebuilt from the vault: %d leaves", len(self.tree))

    def _remember_id(self, event: dict[str, Any], index: int) -> None:
        event_id = event.get("event_id")
        if not isinstance(event_id, str):
            return
        if event_id in self._events:  # only a second writer could have done it: the first stands
            log.warning(
                "ledger entry %d repeats the event id of entry %d",
                index,
                self._events[event_id].position,
            )
            return
        accepted = datetime.fromisoformat(event["time"])
        self._events[event_id] = _KnownEvent(content_digest(event), index, _micros(accepted))

    def _fill_gap(self, markers: dict[int, GapMarker], claimed: int, where: str) -> None:
        first = len(self.tree)
        for index, leaf in enumerate(marked_gap(markers, first, claimed - first, where), first):
            self._gap_leaves[index] = leaf
            self.tree.append(leaf_hash(leaf))

    # -- appending -------------------------------------------------------------------------

    def append(self, event: LedgerEventIn) -> Future[LedgerReceipt]:
        """Queue an event; the future resolves once it is durably in the vault.

        Raises `InvalidEvent` (taking no index) for an event that is not valid or
        cannot be encoded as a leaf.
        """
        body = checked_event(event)
        envelope = body["envelope_id"]
        event_id: str | None = body.get("event_id")
        digest = content_digest(body) if event_id is not None else b""
        future: Future[LedgerReceipt] = Future()
        with self._lock:
            if self._failed:
                raise ServiceUnavailable(f"the ledger stopped appending: {self._failed}")
            if event_id is not None and event_id in self._events:
                return self._replay(event_id, digest)
            index = self._next_index
            accepted = datetime.now(UTC)
            leaf = encode_leaf(index, accepted, self._last_leaf.get(envelope), body)
            hashed = leaf_hash(leaf)
            self._next_index = index + 1  # only now: nothing above can fail any more
            self._last_leaf[envelope] = hashed
            if event_id is not None:
                self._events[event_id] = _KnownEvent(digest, index, _micros(accepted))
                self._pending_ids[event_id] = future
            self._pending.append(
                _Pending(leaf, hashed, index, envelope, accepted, future, event_id)
            )
            self._wake.notify()
        return future

    def _replay(self, event_id: str, digest: bytes) -> Future[LedgerReceipt]:
        """The first receipt of `event_id` (under the lock): at once when it is stored,
        else once its segment is (a retry is never acknowledged before the original)."""
        known = self._events[event_id]
        if known.digest != digest:
            raise EventConflict(
                f"event {event_id} is entry {known.position} of the ledger, with other content"
            )
        replayed: Future[LedgerReceipt] = Future()
        original = self._pending_ids.get(event_id)
        if original is not None:

            def relay(done: Future[LedgerReceipt]) -> None:
                error = done.exception()
                if error is not None:
                    replayed.set_exception(error)
                else:
                    replayed.set_result(done.result().model_copy(update={"replayed": True}))

            original.add_done_callback(relay)
            return replayed
        replayed.set_result(
            LedgerReceipt(
                index=known.position,
                leaf_hash=self.tree.leaf(known.position).hex(),
                time=_EPOCH + timedelta(microseconds=known.micros),
                event_id=event_id,
                replayed=True,
            )
        )
        return replayed

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
                self._pending_ids.clear()
            for pending in (*group, *stranded):
                pending.future.set_exception(ServiceUnavailable(reason))
            return
        with self._lock:
            self._segments.add_run(first, name, 0)
            self._segments.keep(name, [p.leaf for p in group])
            receipts = []
            for pending in group:
                hashed = pending.hashed
                self.tree.append(hashed)
                self._by_envelope.setdefault(pending.envelope_id, []).append(pending.index)
                if pending.event_id is not None:
                    self._pending_ids.pop(pending.event_id, None)
                receipts.append(
                    (
                        pending,
                        LedgerReceipt(
                            index=pending.index,
                            leaf_hash=hashed.hex(),
                            time=pending.time,
                            event_id=pending.event_id,
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
            gap = self._gap_leaves.get(index)
            if gap is not None:
                return gap
            name, line = self._segments.locate(index)
            lines = self._segments.cached(name)
        if lines is None:
            lines = self.vault.get_record(name).splitlines()
            with self._lock:
                self._segments.keep(name, lines)
        return lines[line]

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

    def envelope_indexes(self, envelope_id: str) -> list[int]:
        with self._lock:
            return list(self._by_envelope.get(envelope_id, []))

    def envelope_entries(
        self, envelope_id: str, *, after: int = -1, limit: int = 1000
    ) -> tuple[int, list[tuple[int, bytes]], bool]:
        """(tree size, [(index, leaf)] of the envelope's stored events after `after`, in
        order, at most `limit`, whether more follow).  Every index is below the size."""
        with self._lock:
            size = len(self.tree)
            indexes = self._by_envelope.get(envelope_id, [])
            start = bisect.bisect_right(indexes, after)
            chosen = indexes[start : start + limit]
            more = start + limit < len(indexes)
        return size, [(index, self.leaf(index)) for index in chosen], more

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
            self._latest_head = store_head(self.vault, signed_head(head, signer), size)
            return self._latest_head
