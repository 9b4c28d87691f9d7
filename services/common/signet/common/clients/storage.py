"""The portal's client of storage: documents into the vault, events into the ledger."""

from __future__ import annotations

import hashlib

from signet.common.clients.base import ServiceClient
from signet.common.contracts.storage import (
    EvidenceSeal,
    InclusionProof,
    LedgerEventIn,
    LedgerReceipt,
    ObjectInfo,
    ObjectKind,
    TreeHead,
)


class StorageClient(ServiceClient):
    service = "storage"

    def put(
        self,
        data: bytes,
        kind: ObjectKind,
        *,
        envelope_id: str | None = None,
        content_type: str = "application/pdf",
    ) -> ObjectInfo:
        """Store `data` (write once, retained); storing the same bytes again is a no-op
        that answers the object as it is (so a retried upload is harmless)."""
        headers = {
            "Content-Type": content_type,
            "X-Signet-Kind": kind.value,
            "X-Signet-Sha256": hashlib.sha256(data).hexdigest(),
        }
        if envelope_id is not None:
            headers["X-Signet-Envelope"] = envelope_id
        response = self.request("PUT", "/v1/objects", content=data, headers=headers)
        return ObjectInfo.model_validate_json(response.content)

    def get(self, sha256: str) -> bytes:
        data = self.request("GET", f"/v1/objects/{sha256}").content
        if hashlib.sha256(data).hexdigest() != sha256:
            # never hand on bytes that are not the ones asked for
            raise ValueError(f"storage answered other bytes for {sha256}")
        return data

    def append(self, event: LedgerEventIn) -> LedgerReceipt:
        response = self.request(
            "POST", "/v1/ledger/events", json=event.model_dump(mode="json", exclude_none=True)
        )
        return LedgerReceipt.model_validate_json(response.content)

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> InclusionProof:
        params: dict[str, int] = {"index": index}
        if tree_size is not None:
            params["tree_size"] = tree_size
        response = self.request("GET", "/v1/ledger/proof/inclusion", params=params)
        return InclusionProof.model_validate_json(response.content)

    def evidence(self, envelope_id: str) -> bytes:
        return self.request("GET", f"/v1/envelopes/{envelope_id}/evidence").content

    def tree_head(self) -> TreeHead:
        """A tree head signed now, for the current size of the ledger."""
        response = self.request("GET", "/v1/ledger/tree-head", params={"fresh": "true"})
        return TreeHead.model_validate_json(response.content)

    def seal_evidence(self, envelope_id: str) -> EvidenceSeal:
        """Seal the envelope's evidence package once; again: the same seal (idempotent)."""
        response = self.request("POST", f"/v1/envelopes/{envelope_id}/evidence")
        return EvidenceSeal.model_validate_json(response.content)
