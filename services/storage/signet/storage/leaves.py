"""Ledger leaves: canonical JSON, and an event checked and encoded before it takes an index.

Kept apart from `signet.storage.ledger` (the log itself) so that what a leaf *is*
can be read, and tested, on its own: the same bytes are hashed into the tree,
shipped in evidence packages and checked offline by `signet verify-evidence`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from signet.common.contracts.storage import LedgerEventIn, TreeHead
from signet.common.errors import Conflict, InvalidRequest

#: The largest leaf: the contract's bounds (64 KiB of details, 100 hashes, short
#: fields) come to well under this; a leaf over it is refused, never stored.
MAX_LEAF_BYTES = 128 * 1024


class InvalidEvent(InvalidRequest):
    """An event the ledger cannot keep as it is (refused before it takes an index)."""

    status_code = 422
    code = "invalid_event"


class EventConflict(Conflict):
    """An event id the ledger holds already, for an event with other content."""

    code = "event_conflict"


#: The fields a leaf adds to the event it records (not part of what the caller sent).
LEAF_FIELDS = ("index", "time", "previous")


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


def encode_leaf(
    index: int, accepted: datetime, previous: bytes | None, event: dict[str, Any]
) -> bytes:
    """The canonical leaf of a validated event (`InvalidEvent` if it cannot be one)."""
    try:
        leaf = canonical_json(
            {
                "index": index,
                "time": accepted.isoformat(),
                "previous": previous.hex() if previous is not None else None,
                **event,
            }
        )
    except (ValueError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidEvent(f"the event cannot be a ledger leaf ({type(exc).__name__})") from None
    if len(leaf) > MAX_LEAF_BYTES:
        raise InvalidEvent(f"the event is {len(leaf)} bytes as a leaf; at most {MAX_LEAF_BYTES}")
    return leaf


def checked_event(event: LedgerEventIn) -> dict[str, Any]:
    """The event as JSON, validated again by the contract (a caller in this process
    may have built it with `model_construct`): nothing unchecked reaches an index.

    An event without an id has no `event_id` key at all: its leaf is the same bytes
    as before ids existed."""
    try:
        body = event.model_dump(mode="json")
        checked = LedgerEventIn.model_validate(body).model_dump(mode="json")
    except ValueError as exc:  # pydantic's ValidationError and serialisation errors
        raise InvalidEvent(f"the event is not valid: {type(exc).__name__}") from None
    if checked.get("event_id") is None:
        checked.pop("event_id", None)
    return checked


def content_digest(event: dict[str, Any]) -> bytes:
    """What "the same event" means for an idempotent append: SHA-256 (first 16 bytes)
    of the caller's fields, canonical, without the id and without empty values (so an
    optional field added to the contract later does not make a stored event differ).

    `event` is a checked event or a stored leaf (whose own fields are left out)."""
    kept = {
        key: value
        for key, value in event.items()
        if key not in LEAF_FIELDS and key != "event_id" and value not in (None, [], {})
    }
    return hashlib.sha256(canonical_json(kept)).digest()[:16]
