"""Sealing an envelope's evidence package once: stored in the vault, recorded write-once,
its manifest's hash appended to the ledger (`signet.storage.evidence`).

After a preservation renewal of the envelope's documents (`signet.storage.preservation`)
a newer package supersedes the sealed one (`supersede_package`): a new vault object,
generation 2, 3 …, whose signed manifest names the package before it, recorded
write-once like the first and announced by its own `evidence.sealed` event.  The old
package is never touched and still verifies; downloads serve the newest.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from typing import Any

from signet.common.contracts.storage import (
    EvidenceSeal,
    LedgerEventIn,
    ObjectKind,
)
from signet.common.errors import Conflict
from signet.storage.evidence_build import build_package
from signet.storage.ledger import Ledger, TreeHeadSigner
from signet.storage.vault import ObjectNotFound, Vault

#: Where a sealed package is recorded (write-once), by the SHA-256 of its envelope id.
SEALS = "evidence/sealed"
#: Where the packages that supersede it are: ``<SUPERSEDING>/<that hash>/<generation>.json``.
SUPERSEDING = "evidence/superseding"
SEALED_EVENT = "evidence.sealed"
_seal_lock = threading.Lock()


# -- sealing: once per envelope, kept in the vault ------------------------------------------


def _seal_record(envelope_id: str) -> str:
    return f"{SEALS}/{hashlib.sha256(envelope_id.encode()).hexdigest()}.json"


def _envelope_key(envelope_id: str) -> str:
    return hashlib.sha256(envelope_id.encode()).hexdigest()


def seal_event_id(envelope_id: str, generation: int = 1) -> str:
    """The ledger event id of an envelope's seal (the same at every retry); a later
    generation's is suffixed with its number."""
    base = "evidence-" + _envelope_key(envelope_id)[:48]
    return base if generation == 1 else f"{base}-{generation}"


def sealed(vault: Vault, envelope_id: str) -> dict[str, Any] | None:
    """The newest seal record of `envelope_id` (package hash, manifest hash, generation…),
    None if unsealed."""
    first = first_seal(vault, envelope_id)
    if first is None:
        return None
    later = vault.records(f"{SUPERSEDING}/{_envelope_key(envelope_id)}/")
    if not later:
        return first
    record: dict[str, Any] = json.loads(vault.get_record(later[-1]))
    return record


def first_seal(vault: Vault, envelope_id: str) -> dict[str, Any] | None:
    """The record of the package sealed at completion (generation 1)."""
    try:
        record: dict[str, Any] = json.loads(vault.get_record(_seal_record(envelope_id)))
    except ObjectNotFound:
        return None
    return record


def _seal_event(record: dict[str, Any]) -> LedgerEventIn:
    generation = int(record.get("generation", 1))
    details = {
        "manifest_sha256": record["manifest_sha256"],
        "package_sha256": record["package_sha256"],
        "tree_size": str(record["tree_size"]),
    }
    if generation > 1:
        details |= {"generation": str(generation), "supersedes": record["supersedes"]}
    return LedgerEventIn(
        event_id=seal_event_id(record["envelope_id"], generation),
        event_type=SEALED_EVENT,
        envelope_id=record["envelope_id"],
        actor="signet-storage",
        details=details,
    )


def seal_package(
    envelope_id: str,
    *,
    vault: Vault,
    ledger: Ledger,
    signer: TreeHeadSigner,
    pki: dict[str, bytes],
) -> tuple[EvidenceSeal, bool]:
    """Seal the envelope's package once: (the seal, whether this call made it).

    Made and stored in the vault, recorded write-once, then its manifest's hash is
    appended to the ledger (an idempotent event: a retry after a crash between the
    steps completes the seal, never makes a second one) and a tree head signed over it.
    """
    with _seal_lock:
        record, made = sealed(vault, envelope_id), False
        if record is None:
            record, made = _make_seal(envelope_id, vault, ledger, signer, pki), True
    receipt = ledger.append_sync(_seal_event(record))
    if not receipt.replayed:
        ledger.publish_head(signer)
    return (
        EvidenceSeal.model_validate(
            record | {"ledger_index": receipt.index, "leaf_hash": receipt.leaf_hash}
        ),
        made,
    )


def supersede_package(
    envelope_id: str,
    *,
    vault: Vault,
    ledger: Ledger,
    signer: TreeHeadSigner,
    pki: dict[str, bytes],
) -> EvidenceSeal | None:
    """A newer package for a sealed envelope (after a renewal of its documents), naming
    the newest one before it; None when the envelope was never sealed (its preview,
    made on request, holds the renewals anyway).

    It holds every event up to now, so the `document.preserved` events and both the
    original and the renewed documents; it is retained at least as long as the package
    it supersedes.  Recorded write-once under the next generation's name, then announced
    in the ledger as that generation's `evidence.sealed` (idempotent, like the first).
    """
    with _seal_lock:
        previous = sealed(vault, envelope_id)
        if previous is None:
            return None
        # a crash may have left the newest one recorded but not announced: announce it
        # first (a replay when it was), so that every generation has its ledger event
        ledger.append_sync(_seal_event(previous))
        record = _make_seal(envelope_id, vault, ledger, signer, pki, previous=previous)
    receipt = ledger.append_sync(_seal_event(record))
    if not receipt.replayed:
        ledger.publish_head(signer)
    return EvidenceSeal.model_validate(
        record | {"ledger_index": receipt.index, "leaf_hash": receipt.leaf_hash}
    )


def _make_seal(
    envelope_id: str,
    vault: Vault,
    ledger: Ledger,
    signer: TreeHeadSigner,
    pki: dict[str, bytes],
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    supersedes = (
        None
        if previous is None
        else {
            "package_sha256": previous["package_sha256"],
            "manifest_sha256": previous["manifest_sha256"],
            "generation": int(previous.get("generation", 1)),
        }
    )
    vault.staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=vault.staging) as spool:
        built = build_package(
            envelope_id, vault=vault, ledger=ledger, signer=signer, pki=pki, target=spool,
            sealed=True, supersedes=supersedes,
        )  # fmt: skip
        spool.seek(0)
        info, _ = vault.put(
            spool,
            content_type="application/zip",
            kind=ObjectKind.EVIDENCE,
            envelope_id=envelope_id,
        )
    record: dict[str, Any] = {
        "envelope_id": envelope_id,
        "package_sha256": info.sha256,
        "size": info.size,
        "manifest_sha256": built.manifest_sha256,
        "created": built.created.isoformat(),
        "tree_size": built.tree_size,
    }
    name = _seal_record(envelope_id)
    if previous is not None:
        old = vault.head(previous["package_sha256"])
        if info.retain_until < old.retain_until:
            vault.extend_retention(info.sha256, old.retain_until)
        generation = int(previous.get("generation", 1)) + 1
        record |= {"generation": generation, "supersedes": previous["package_sha256"]}
        name = f"{SUPERSEDING}/{_envelope_key(envelope_id)}/{generation:06d}.json"
    try:
        vault.put_record(name, json.dumps(record, sort_keys=True).encode())
    except Conflict:  # another process sealed it first: its package stands
        return json.loads(vault.get_record(name)) if previous is not None else (
            first_seal(vault, envelope_id) or record
        )  # fmt: skip
    return record
