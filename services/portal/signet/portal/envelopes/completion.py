"""Completion: once routing says the last party has acted, every signed document is made
B-LTA by the signer, stored as the final revision, and storage seals the evidence.

Each step is idempotent and recorded, so a completion that fails half-way (signer or
storage away) is finished by the next call: a document already completed has its
`document.completed` event and is skipped, storing the same bytes is a no-op in the
vault, and storage seals an envelope's package once (again: the same seal).  Until
`envelope.completed` is in the timeline the envelope is *completing*: routing's
status says completed (nobody has anything left to do), the evidence says not yet.
"""

from __future__ import annotations

from signet.common.clients import SignerClient, StorageClient
from signet.common.contracts.signer import CompleteOptions
from signet.common.contracts.storage import ObjectKind
from signet.portal.envelopes import routing
from signet.portal.envelopes.models import Document, Envelope
from signet.portal.envelopes.service import EnvelopeService
from signet.portal.evidence.drain import drain_once
from signet.portal.evidence.models import LedgerEvent
from signet.portal.evidence.record import NOWHERE, Origin, record_event
from sqlalchemy import select
from sqlalchemy.orm import Session


def _events(session: Session, envelope_id: str, event_type: str) -> list[LedgerEvent]:
    return list(
        session.scalars(
            select(LedgerEvent).where(
                LedgerEvent.envelope_id == envelope_id, LedgerEvent.event_type == event_type
            )
        )
    )


class Completion:
    def __init__(
        self, envelopes: EnvelopeService, signer: SignerClient, storage: StorageClient
    ) -> None:
        self.envelopes, self.signer, self.storage = envelopes, signer, storage

    def due(self, envelope_id: str) -> bool:
        """Completed by routing, not yet by evidence (the *completing* state)."""
        with self.envelopes.sessions() as session:
            envelope = session.get(Envelope, envelope_id)
            if envelope is None or envelope.status != routing.EnvelopeStatus.COMPLETED.value:
                return False
            return not _events(session, envelope_id, "envelope.completed")

    def sealed(self, envelope_id: str) -> bool:
        """Whether completion finished: the evidence is sealed and recorded."""
        with self.envelopes.sessions() as session:
            return bool(_events(session, envelope_id, "envelope.completed"))

    def run(self, envelope_id: str, origin: Origin = NOWHERE) -> bool:
        """Finish what is left; True once the envelope is completed with sealed evidence."""
        if not self.due(envelope_id):
            return False
        with self.envelopes.sessions() as session:
            done = {e.details.get("document") for e in _events(session, envelope_id,
                                                              "document.completed")}  # fmt: skip
            documents = [
                (d.id, d.current_sha256)
                for d in session.scalars(
                    select(Document).where(Document.envelope_id == envelope_id)
                )
                if d.id not in done and d.current_sha256 != d.original_sha256
            ]
        for document_id, before in documents:
            final = self.signer.complete(self.storage.get(before), CompleteOptions())
            info = self.storage.put(final, ObjectKind.FINAL, envelope_id=envelope_id)
            with self.envelopes.sessions.begin() as session:
                document = session.get(Document, document_id)
                assert document is not None
                if document.current_sha256 == before:
                    document.current_sha256 = info.sha256
                    record_event(
                        session, envelope_id, "document.completed", "system:portal", origin,
                        document_hashes=[before, info.sha256],
                        details={"document": document_id, "level": "B-LTA"},
                    )  # fmt: skip
        # the package holds the ledger's entries: everything recorded so far goes first
        while drain_once(self.envelopes.sessions, self.storage):
            pass
        seal = self.storage.seal_evidence(envelope_id)
        with self.envelopes.sessions.begin() as session:
            if not _events(session, envelope_id, "envelope.completed"):
                record_event(
                    session, envelope_id, "envelope.completed", "system:portal", origin,
                    details={"evidence": seal.package_sha256, "manifest": seal.manifest_sha256,
                             "evidence_ledger_index": str(seal.ledger_index)},
                )  # fmt: skip
        return True
