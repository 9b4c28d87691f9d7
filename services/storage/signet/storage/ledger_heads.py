"""The ledger's signed tree heads: signed by the signer, timestamped, kept in the vault.

A head names a tree size and its root; one is recorded per size (write-once), and on
start the newest head that matches the rebuilt tree is the latest.  A head that does not
(signed over a tree a marked gap corrected, `signet.storage.ledger_gaps`) is
superseded: kept, reported, never served as the latest.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Protocol

from signet.common.contracts.storage import TreeHead
from signet.common.errors import Conflict, ServiceUnavailable
from signet.storage.leaves import tree_head_payload
from signet.storage.merkle import MerkleTree
from signet.storage.vault import Vault

log = logging.getLogger("signet.storage.ledger")

HEADS = "ledger/heads"


class TreeHeadSigner(Protocol):
    """Signs and timestamps tree heads (the signer service, over HTTP)."""

    def sign_digest(self, digest: bytes) -> tuple[bytes, str, list[str]]:
        """(DER signature, algorithm name, PEM chain with the signing certificate first)."""
        ...

    def timestamp(self, digest: bytes) -> bytes:
        """A DER RFC 3161 TimeStampToken over the SHA-256 `digest`."""
        ...


def signed_head(head: TreeHead, signer: TreeHeadSigner) -> TreeHead:
    """`head` with the signer's signature, chain and timestamp token over its payload."""
    digest = hashlib.sha256(tree_head_payload(head)).digest()
    signature, algorithm, chain = signer.sign_digest(digest)
    token = signer.timestamp(digest)
    return head.model_copy(
        update={
            "signature": base64.b64encode(signature).decode(),
            "signature_algorithm": algorithm,
            "timestamp_token": base64.b64encode(token).decode(),
            "certificate_chain": chain,
        }
    )


def store_head(vault: Vault, head: TreeHead, size: int) -> TreeHead:
    """Record `head`; if its size has a head already, that one stands when it signs
    the same root.  One that does not (signed over a tree a marked gap corrected)
    is superseded: this head is recorded beside it, under a name of its own."""
    for attempt in range(100):
        suffix = f"-{attempt}" if attempt else ""
        name = f"{HEADS}/{size:012d}{suffix}.json"
        try:
            vault.put_record(name, head.model_dump_json().encode())
            return head
        except Conflict:  # another process signed this size first: its head stands
            stored = TreeHead.model_validate_json(vault.get_record(name))
            if stored.root_hash == head.root_hash:
                return stored
    raise ServiceUnavailable(f"no free name for a tree head of size {size}")


def read_latest_head(vault: Vault, tree: MerkleTree) -> tuple[TreeHead | None, list[str]]:
    """The newest stored head that matches `tree`, and the names of the heads passed
    over because they do not (superseded)."""
    superseded: list[str] = []
    for name in reversed(vault.records(HEADS)):
        head = TreeHead.model_validate_json(vault.get_record(name))
        if head.tree_size > len(tree):
            continue
        if head.root_hash != tree.root(head.tree_size).hex():
            log.error(
                "signed tree head %s does not match the log as rebuilt (a marked gap "
                "corrected the tree it was signed over): superseded",
                name,
            )
            superseded.append(name)
            continue
        return head, superseded
    return None, superseded
