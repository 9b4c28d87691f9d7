"""Gaps in the ledger, and the signed marker an operator records to go on past one.

A gap is a position of the Merkle log that no stored segment fills: an index was
handed out and its event never written (the bug of issue 24 did that: an event
whose leaf failed to encode after it had taken its index), or a segment is lost
from the store.  Segments are retained under Object Lock and can never be
rewritten, and renumbering what follows would break every receipt and proof
given out since; so a gap stays where it is and is *accounted for*.

What the operator does when storage reports a gap (readiness answers 503 with
``the log in the vault has a gap at N (K entries)`` and the command to run; the
same line is logged as an error at every attempt to open the ledger):

1. Find out why (the storage log around the time of entry N-1; whether a segment
   record was deleted from the store, which Object Lock should have prevented).
   Nothing in the retained segments is changed by what follows.
2. Record a gap marker, signed by the ledger seal and timestamped by the TSA
   (the signer must be up)::

       signet storage ledger mark-gap --index N --count K --reason "what happened"

   The marker is a new immutable record ``ledger/gaps/<N>.json``; the command
   refuses a position that is not a gap, a count that does not close it, and a
   marker that exists already.
3. Storage then opens the ledger (at the next readiness probe, or a restart): each
   position of the gap holds a *gap leaf*, canonical JSON derived from the marker
   (``event_type`` ``ledger.gap``, envelope ``signet:ledger``, the reason and the
   marker's name), so every later leaf stays at the index its receipt names and
   every inclusion proof verifies.  Tree heads signed before the marker over a
   different tree (the buggy process signed leaves one position off) no longer
   match: they stay in the vault, are logged as superseded, and a new head is
   signed for the corrected tree.
4. Tell whoever relies on the evidence packages made between the bad event and the
   marker to fetch them again: those packages do not verify.

Gap markers are verified when the ledger opens: the signature over the marker's
payload with the key of the certificate it carries (a marker without a valid
signature is no marker, and the ledger stays closed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Protocol

from asn1crypto import pem
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509 import load_der_x509_certificate
from pydantic import BaseModel, ConfigDict, Field
from signet.common.contracts.storage import PlainText
from signet.common.errors import Conflict, InvalidRequest, ServiceUnavailable
from signet.storage.leaves import canonical_json
from signet.storage.vault import Vault

log = logging.getLogger("signet.storage.ledger")  # the ledger's own log: one place to read

GAPS = "ledger/gaps"
SEGMENTS = "ledger/segments"
#: The envelope id gap leaves are filed under (no envelope's: the pattern forbids none,
#: but the portal's ids never start with `signet:`).
LEDGER_ENVELOPE = "signet:ledger"


class _Signer(Protocol):
    def sign_digest(self, digest: bytes) -> tuple[bytes, str, list[str]]: ...

    def timestamp(self, digest: bytes) -> bytes: ...


class GapMarker(BaseModel):
    """A signed statement: positions first .. first+count-1 of the log hold no event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: int = Field(ge=0)
    count: int = Field(ge=1, le=1_000_000)
    reason: Annotated[PlainText, Field(min_length=1, max_length=500)]
    time: datetime
    log_id: str
    signature: str
    signature_algorithm: str
    timestamp_token: str
    certificate_chain: list[str]

    @property
    def record(self) -> str:
        return f"{GAPS}/{self.first:012d}.json"


def marker_payload(first: int, count: int, reason: str, time: datetime, log_id: str) -> bytes:
    """The signed part of a marker."""
    return canonical_json(
        {
            "count": count,
            "first": first,
            "log_id": log_id,
            "reason": reason,
            "time": time.isoformat(),
            "type": "signet-ledger-gap/1",
        }
    )


def gap_leaf(marker: GapMarker, index: int) -> bytes:
    """The leaf standing at `index` of a marked gap (the same bytes at every rebuild)."""
    return canonical_json(
        {
            "actor": "operator",
            "details": {
                "count": str(marker.count),
                "first": str(marker.first),
                "marker": marker.record,
                "reason": marker.reason,
            },
            "document_hashes": [],
            "envelope_id": LEDGER_ENVELOPE,
            "event_type": "ledger.gap",
            "index": index,
            "previous": None,
            "time": marker.time.isoformat(),
        }
    )


def verify_marker(marker: GapMarker) -> None:
    """Raise `ServiceUnavailable` unless the marker's signature verifies with its certificate."""
    payload = marker_payload(marker.first, marker.count, marker.reason, marker.time, marker.log_id)
    try:
        certificate = load_der_x509_certificate(
            pem.unarmor(marker.certificate_chain[0].encode())[2]
        )
        key = certificate.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("not an EC key")
        key.verify(
            base64.b64decode(marker.signature),
            hashlib.sha256(payload).digest(),
            ec.ECDSA(utils.Prehashed(hashes.SHA256())),
        )
    except (IndexError, ValueError, InvalidSignature) as exc:
        raise ServiceUnavailable(
            f"gap marker {marker.record} is not validly signed ({type(exc).__name__}): "
            "the ledger stays closed"
        ) from None


def read_markers(vault: Vault) -> dict[int, GapMarker]:
    """Every recorded gap marker, verified, by its first position."""
    markers: dict[int, GapMarker] = {}
    for name in vault.records(GAPS):
        try:
            marker = GapMarker.model_validate_json(vault.get_record(name))
        except ValueError:
            raise ServiceUnavailable(f"gap marker {name} is unreadable") from None
        verify_marker(marker)
        markers[marker.first] = marker
    return markers


@dataclass(frozen=True)
class Gap:
    first: int
    count: int
    #: The segment (and its line) whose leaf came after the gap.
    before: str


def leaf_indexes(vault: Vault) -> Iterator[tuple[str, int, int]]:
    """(segment, line, index the leaf claims) of every stored leaf, in order."""
    for name in vault.records(SEGMENTS):
        for line, leaf in enumerate(vault.get_record(name).splitlines()):
            yield name, line, int(json.loads(leaf)["index"])


def find_gaps(vault: Vault) -> list[Gap]:
    """The gaps of the stored log, marked or not."""
    gaps, position = [], 0
    for name, line, index in leaf_indexes(vault):
        if index > position:
            gaps.append(Gap(position, index - position, f"{name} line {line + 1}"))
        position = max(position, index + 1)
    return gaps


def gap_message(first: int, count: int, where: str) -> str:
    return (
        f"the log in the vault has a gap at {first} ({count} entries, before {where}); "
        "retained segments are never rewritten: find out why, then record a signed gap marker "
        f'with `signet storage ledger mark-gap --index {first} --count {count} --reason "..."`'
    )


def mark_gap(
    vault: Vault,
    signer: _Signer,
    *,
    first: int,
    count: int,
    reason: str,
    log_id: str = "signet-ledger",
) -> GapMarker:
    """Sign, timestamp and record a marker for the gap at `first` (exactly that gap)."""
    gaps = {gap.first: gap for gap in find_gaps(vault)}
    gap = gaps.get(first)
    if gap is None:
        found = ", ".join(f"{g.first} ({g.count})" for g in gaps.values()) or "none"
        raise InvalidRequest(f"position {first} is not a gap of the log; gaps: {found}")
    if gap.count != count:
        raise InvalidRequest(f"the gap at {first} is {gap.count} entries, not {count}")
    if first in read_markers(vault):
        raise Conflict(f"the gap at {first} is marked already")
    time = datetime.now(UTC).replace(microsecond=0)
    checked = GapMarker.model_validate(
        {
            "first": first,
            "count": count,
            "reason": reason,
            "time": time,
            "log_id": log_id,
            "signature": "-",
            "signature_algorithm": "-",
            "timestamp_token": "-",
            "certificate_chain": [],
        }
    )  # the reason is checked before anything is signed
    digest = hashlib.sha256(marker_payload(first, count, checked.reason, time, log_id)).digest()
    signature, algorithm, chain = signer.sign_digest(digest)
    marker = checked.model_copy(
        update={
            "signature": base64.b64encode(signature).decode(),
            "signature_algorithm": algorithm,
            "timestamp_token": base64.b64encode(signer.timestamp(digest)).decode(),
            "certificate_chain": chain,
        }
    )
    verify_marker(marker)
    vault.put_record(marker.record, marker.model_dump_json(indent=2).encode())
    return marker


def marked_gap(markers: dict[int, GapMarker], first: int, count: int, where: str) -> list[bytes]:
    """The gap leaves for `count` missing entries from `first`, if the operator marked
    exactly that gap; else `ServiceUnavailable` (the ledger stays closed), logged."""
    marker = markers.get(first)
    if marker is None or marker.count != count:
        message = gap_message(first, count, where)
        log.error("ledger closed: %s", message)
        raise ServiceUnavailable(message)
    log.warning(
        "ledger gap at %d (%d entries) filled by the signed marker %s: %s",
        first,
        count,
        marker.record,
        marker.reason,
    )
    return [gap_leaf(marker, index) for index in range(first, first + count)]
