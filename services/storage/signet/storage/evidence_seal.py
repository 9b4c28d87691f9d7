"""Sealing an envelope's evidence package once: stored in the vault, recorded write-once,
its manifest's hash appended to the ledger (`signet.storage.evidence`)."""

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
SEALED_EVENT = "evidence.sealed"
_seal_lock = threading.Lock()


# -- sealing: once per envelope, kept in the vault ------------------------------------------


def _seal_record(envelope_id: str) -> str:
    return f"{SEALS}/{hashlib.sha256(envelope_id.encode()).hexdigest()}.json"


def seal_event_id(envelope_id: str) -> str:
    """The ledger event id of an envelope's seal (the same at every retry)."""
    return "evidence-" + hashlib.sha256(envelope_id.encode()).hexdigest()[:48]


def sealed(vault: Vault, envelope_id: str) -> dict[str, Any] | None:
    """The seal record of `envelope_id` (package hash, manifest hash...), None if unsealed."""
    try:
        record: dict[str, Any] = json.loads(vault.get_record(_seal_record(envelope_id)))
    except ObjectNotFound:
        return None
    return record


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
    receipt = ledger.append_sync(
        LedgerEventIn(
            event_id=seal_event_id(envelope_id),
            event_type=SEALED_EVENT,
            envelope_id=envelope_id,
            actor="signet-storage",
            details={
                "manifest_sha256": record["manifest_sha256"],
                "package_sha256": record["package_sha256"],
                "tree_size": str(record["tree_size"]),
            },
        )
    )
    if not receipt.replayed:
        ledger.publish_head(signer)
    return (
        EvidenceSeal.model_validate(
            record | {"ledger_index": receipt.index, "leaf_hash": receipt.leaf_hash}
        ),
        made,
    )


def _make_seal(
    envelope_id: str, vault: Vault, ledger: Ledger, signer: TreeHeadSigner, pki: dict[str, bytes]
) -> dict[str, Any]:
    vault.staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=vault.staging) as spool:
        built = build_package(
            envelope_id, vault=vault, ledger=ledger, signer=signer, pki=pki, target=spool,
            sealed=True,
        )  # fmt: skip
        spool.seek(0)
        info, _ = vault.put(
            spool,
            content_type="application/zip",
            kind=ObjectKind.EVIDENCE,
            envelope_id=envelope_id,
        )
    record = {
        "envelope_id": envelope_id,
        "package_sha256": info.sha256,
        "size": info.size,
        "manifest_sha256": built.manifest_sha256,
        "created": built.created.isoformat(),
        "tree_size": built.tree_size,
    }
    try:
        vault.put_record(_seal_record(envelope_id), json.dumps(record, sort_keys=True).encode())
    except Conflict:  # another process sealed it first: its package stands
        return sealed(vault, envelope_id) or record
    return record
