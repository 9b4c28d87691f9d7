"""Building an evidence package: the zip of one envelope (`signet.storage.evidence`).

Documents are streamed from the vault into the zip, never held whole; the manifest
states every member's SHA-256 and is signed by the ledger seal last.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from signet.common.errors import NotFound
from signet.storage.evidence_manifest import (
    FORMAT,
    MANIFEST,
    SIGNATURE,
    manifest_bytes,
    sign_manifest,
)
from signet.storage.evidence_summary import SUMMARY_LOCALES, summary_name, summary_text
from signet.storage.ledger import Ledger, TreeHeadSigner, canonical_json
from signet.storage.vault import Vault

# -- building -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    manifest_sha256: str
    created: datetime
    tree_size: int


def build_package(
    envelope_id: str,
    *,
    vault: Vault,
    ledger: Ledger,
    signer: TreeHeadSigner,
    pki: dict[str, bytes],
    target: IO[bytes],
    sealed: bool = False,
    supersedes: dict[str, Any] | None = None,
) -> Built:
    """Write the package of `envelope_id` to `target` (documents streamed, not held).

    `supersedes` (the package hash, manifest hash and generation of the package this
    one supersedes, after a preservation renewal) goes into the signed manifest."""
    indexes = ledger.envelope_indexes(envelope_id)
    if not indexes:
        raise NotFound(f"the ledger has no events for envelope {envelope_id}")
    head = ledger.publish_head(signer)
    created = datetime.now(UTC).replace(microsecond=0)
    entries = {index: ledger.leaf(index) for index in indexes if index < head.tree_size}
    proofs = {str(i): ledger.inclusion(i, head.tree_size).model_dump() for i in entries}
    hashes = sorted(
        {h for leaf in entries.values() for h in json.loads(leaf).get("document_hashes", [])}
    )
    files: dict[str, str] = {}
    documents: dict[str, dict[str, Any]] = {}
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def add(name: str, data: bytes) -> None:
            files[name] = hashlib.sha256(data).hexdigest()
            archive.writestr(name, data)

        for sha256 in hashes:
            info = vault.head(sha256)
            name = f"documents/{sha256}{_extension(info.content_type)}"
            digest = hashlib.sha256()
            with archive.open(name, "w", force_zip64=True) as member:
                for chunk in vault.open(sha256):
                    digest.update(chunk)
                    member.write(chunk)
            files[name] = digest.hexdigest()
            documents[name] = {"size": info.size, "kind": info.kind.value}
        for index, leaf in entries.items():
            add(f"ledger/entries/{index:012d}.json", leaf)
        add("ledger/proofs.json", canonical_json(proofs))
        add("ledger/tree-head.json", head.model_dump_json(indent=2).encode())
        for name, data in sorted(pki.items()):
            add(f"pki/{name}", data)
        listed = [(name, d["size"], d["kind"]) for name, d in documents.items()]
        for locale in ("en", *SUMMARY_LOCALES):
            summary = summary_text(
                envelope_id, entries, listed, head, created, complete=sealed, locale=locale,
                supersedes=supersedes,
            )  # fmt: skip
            add(summary_name(locale), summary.encode())
        statements: dict[str, Any] = {} if supersedes is None else {"supersedes": supersedes}
        manifest = manifest_bytes(
            statements
            | {
                "format": FORMAT,
                "envelope_id": envelope_id,
                "created": created.isoformat(),
                "sealed": sealed,
                "tree_head": {
                    "log_id": head.log_id,
                    "root_hash": head.root_hash,
                    "tree_size": head.tree_size,
                },
                "entries": sorted(entries),
                "documents": documents,
                "files": files,
            }
        )
        archive.writestr(MANIFEST, manifest)
        archive.writestr(SIGNATURE, sign_manifest(signer, manifest, created))
    return Built(hashlib.sha256(manifest).hexdigest(), created, head.tree_size)


def _extension(content_type: str) -> str:
    return {
        "application/pdf": ".pdf",
        "application/json": ".json",
        "text/plain": ".txt",
        # signers' attachments (an ID copy as a photo)
        "image/png": ".png",
        "image/jpeg": ".jpg",
    }.get(content_type, ".bin")
