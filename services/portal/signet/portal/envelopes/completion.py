"""Completion: once routing says the last party has acted, every signed document is made
B-LTA by the signer and stored as the final revision, a certificate of completion is
made and sealed by the platform, and storage seals the evidence package.

Each step is idempotent and recorded, so a completion that fails half-way (signer or
storage away, the portal killed) is finished by the next call: a document already
completed has its `document.completed` event and is skipped, storing the same bytes
is a no-op in the vault, the certificate is made once (`certificate.issued`), and
storage seals an envelope's package once (again: the same seal).  Until
`envelope.completed` is in the timeline the envelope is *completing*: routing's
status says completed (nobody has anything left to do), the evidence says not yet.
`CompletionSweep` finds every envelope left completing and finishes it, on any
replica: the peers' "stuck pending" envelopes cannot happen here.

Order matters for the evidence: the certificate is made after the final revisions
and after every event so far reached the ledger (it names their ledger indexes and
a tree head that covers them), and before the package is sealed, so the package
holds the certificate too (its hash is in `certificate.issued`'s document hashes).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from signet.common.clients import SignerClient, StorageClient
from signet.common.clients.base import RemoteError
from signet.common.contracts.signer import (
    ActivationRecord,
    CompleteOptions,
    SignatureLevel,
    SignOptions,
)
from signet.common.contracts.storage import ObjectKind
from signet.common.errors import SignetError
from signet.portal.envelopes import certificate, routing
from signet.portal.envelopes.facts import CompletionFacts, gather
from signet.portal.envelopes.models import Document, Envelope
from signet.portal.envelopes.service import EnvelopeService
from signet.portal.evidence.drain import drain_once
from signet.portal.evidence.models import LedgerEvent
from signet.portal.evidence.record import NOWHERE, Origin, record_event
from signet.portal.schema import utc_now
from sqlalchemy import select
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

#: the platform's seal, as `signet up` makes it (the operator names its own)
DEFAULT_SEAL_LABEL = "signet-default-seal"


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
        self,
        envelopes: EnvelopeService,
        signer: SignerClient,
        storage: StorageClient,
        *,
        seal_label: str = DEFAULT_SEAL_LABEL,
        font: Path = certificate.DEFAULT_FONT,
    ) -> None:
        self.envelopes, self.signer, self.storage = envelopes, signer, storage
        self.seal_label, self.font = seal_label, font

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
        # the certificate and the package name ledger entries: everything so far first
        self._drain()
        issued = self.certificate_sha256(envelope_id) or self._certificate(envelope_id, origin)
        self._drain()
        seal = self.storage.seal_evidence(envelope_id)
        with self.envelopes.sessions.begin() as session:
            if not _events(session, envelope_id, "envelope.completed"):
                record_event(
                    session, envelope_id, "envelope.completed", "system:portal", origin,
                    details={"evidence": seal.package_sha256, "manifest": seal.manifest_sha256,
                             "evidence_ledger_index": str(seal.ledger_index),
                             "certificate": issued},
                )  # fmt: skip
        return True

    def certificate_sha256(self, envelope_id: str) -> str | None:
        """The vault object of the envelope's certificate of completion, once made."""
        with self.envelopes.sessions() as session:
            found = _events(session, envelope_id, "certificate.issued")
            return found[0].details.get("certificate") if found else None

    def _drain(self) -> None:
        while drain_once(self.envelopes.sessions, self.storage):
            pass

    def _certificate(self, envelope_id: str, origin: Origin) -> str:
        """Make, seal (platform seal, then B-LTA) and store the certificate; record it once."""
        head = self.storage.tree_head()
        with self.envelopes.sessions() as session:
            facts = gather(session, envelope_id, self._activation)
        facts = _with_head(facts, (head.tree_size, head.root_hash, head.time))
        unsigned = certificate.render(facts, self.font)
        sealed = self.signer.sign(
            unsigned,
            SignOptions(
                key_label=self.seal_label, level=SignatureLevel.B_T,
                field_name="Certificate of completion",
                reason="Certificate of completion · 完成证书 · Certificado de finalización",
            ),
        )  # fmt: skip
        # B-LTA like the documents: its validation data inside, and a document
        # timestamp that storage's preservation job renews before it expires
        lasting = self.signer.complete(sealed.pdf, CompleteOptions())
        info = self.storage.put(lasting, ObjectKind.CERTIFICATE, envelope_id=envelope_id)
        with self.envelopes.sessions.begin() as session:
            first = _events(session, envelope_id, "certificate.issued")
            if first:  # a concurrent completion recorded its own first: that one counts
                return first[0].details["certificate"]
            record_event(
                session, envelope_id, "certificate.issued", "system:portal", origin,
                document_hashes=[info.sha256],
                details={"certificate": info.sha256, "seal": sealed.certificate_serial,
                         "tree_size": str(head.tree_size)},
            )  # fmt: skip
        return info.sha256

    def _activation(self, activation_id: str) -> ActivationRecord | None:
        try:
            return self.signer.activation(activation_id)
        except RemoteError as missing:
            log.warning("activation %s unreadable for the certificate: %s", activation_id,
                        missing.detail)  # fmt: skip
            return None


def _with_head(facts: CompletionFacts, head: tuple[int, str, datetime]) -> CompletionFacts:
    return dataclasses.replace(facts, ledger_head=head)


class CompletionSweep:
    """Finish every envelope left *completing* (a crash, a service away at the time).

    An envelope is left alone for `grace` after its last party acted, so the request
    that completes it inline is not raced by a sweep on another replica (both would
    be harmless, only wasteful).  One envelope per step: `PeriodicThread` calls again
    at once while there is work."""

    def __init__(
        self,
        completion: Completion,
        *,
        grace: timedelta = timedelta(seconds=20),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.completion, self.grace, self.clock = completion, grace, clock
        self._failed: dict[str, datetime] = {}

    def due(self) -> list[str]:
        """Envelopes completed by routing whose evidence is not sealed, oldest first."""
        finished = self.clock() - self.grace
        with self.completion.envelopes.sessions() as session:
            done = select(LedgerEvent.envelope_id).where(
                LedgerEvent.event_type == "envelope.completed"
            )
            return list(
                session.scalars(
                    select(Envelope.id)
                    .where(
                        Envelope.status == routing.EnvelopeStatus.COMPLETED.value,
                        Envelope.finished_at.is_not(None),
                        Envelope.finished_at <= finished,
                        Envelope.id.not_in(done),
                    )
                    .order_by(Envelope.finished_at)
                )
            )

    def step(self) -> bool:
        """Complete one due envelope; True if one was completed (look again at once).
        An envelope whose completion failed waits one grace period before the next try."""
        now = self.clock()
        for envelope_id in self.due():
            if self._failed.get(envelope_id, now - self.grace) > now - self.grace:
                continue
            try:
                done = self.completion.run(envelope_id)
            except SignetError as exc:
                self._failed[envelope_id] = now
                log.warning("completion of %s waits: %s", envelope_id, exc.detail)
                return False
            self._failed.pop(envelope_id, None)
            if done:
                log.info("completed %s (left completing)", envelope_id)
            return done
        return False
