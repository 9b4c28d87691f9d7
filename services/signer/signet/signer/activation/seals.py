"""Seal use under its keeper's control (DESIGN.md "Signature activation", point 4).

A seal whose keeper is enrolled (`POST /v1/enrolments` with the seal's certificate)
signs only with the keeper's consent, given one of two ways:

- a **seal-use approval** of one document: an activation of the seal's key for that
  document's SHA-256, the code sent to the keeper (`ActivationService`, as for a
  person's key);
- a **standing authorisation** for automatic and batch sealing: terms (callers,
  period, at most N documents, purpose) made pending here, approved once by the keeper
  with an activation bound to the SHA-256 of those terms, then named by each signature
  or batch, which counts against it under a row lock.

A seal without an enrolled keeper signs as before, on the caller's token: the
platform's own seal (certificates of completion, evidence) runs unattended.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from signet.common.contracts.seals import (
    AuthorisationState,
    SealAuthorisation,
    SealAuthorisationApproval,
    SealAuthorisationRequest,
    terms_sha256,
)
from signet.common.contracts.signer import CertificateKind
from signet.common.errors import Conflict, Forbidden, NotFound
from signet.signer.activation.store import ActivationStore
from signet.signer.activation.tables import SealAuthorisationRow
from signet.signer.registry import CertificateRecord
from signet.signer.schema import aware
from sqlalchemy import select


class SealAuthorisationRefused(Forbidden):
    """The named authorisation does not allow this use (the detail says why)."""

    code = "seal_authorisation_refused"


class SealAuthorisationState(Conflict):
    code = "seal_authorisation_state"


def keeper_enrolled(store: ActivationStore, record: CertificateRecord) -> bool:
    """A seal under its keeper's control: every use needs their approval."""
    return (
        record.kind == CertificateKind.SEAL.value and store.contact_for(record.serial) is not None
    )


class SealAuthorisations:
    def __init__(
        self, store: ActivationStore, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store, self.clock = store, clock

    def create(
        self, request: SealAuthorisationRequest, record: CertificateRecord, by: str
    ) -> SealAuthorisation:
        if not keeper_enrolled(self.store, record):
            raise SealAuthorisationState(
                f"certificate {record.serial} is not a seal with an enrolled keeper: enrol "
                "the keeper's contact first (POST /v1/enrolments); a seal without one signs "
                "on the caller's token"
            )
        authorisation_id = "sa_" + secrets.token_urlsafe(18)
        callers = sorted(set(request.callers))
        row = SealAuthorisationRow(
            id=authorisation_id,
            certificate_serial=record.serial,
            key_label=record.key_label,
            callers=json.dumps(callers),
            not_before=request.not_before,
            not_after=request.not_after,
            max_documents=request.max_documents,
            used_documents=0,
            purpose=request.purpose,
            terms_sha256=terms_sha256(
                authorisation_id,
                record.serial,
                callers,
                request.not_before,
                request.not_after,
                request.max_documents,
                request.purpose,
            ),
            state=AuthorisationState.PENDING.value,
            requested_by=by,
            created_at=self.clock(),
        )
        with self.store.registry.session() as session, session.begin():
            session.add(row)
            session.flush()
            return _model(row)

    def get(self, authorisation_id: str) -> SealAuthorisation:
        with self.store.registry.session() as session:
            row = session.get(SealAuthorisationRow, authorisation_id)
            if row is None:
                raise NotFound("no such seal authorisation")
            return _model(row)

    def for_seal(self, serial: str) -> list[SealAuthorisation]:
        with self.store.registry.session() as session:
            rows = session.scalars(
                select(SealAuthorisationRow)
                .where(SealAuthorisationRow.certificate_serial == serial)
                .order_by(SealAuthorisationRow.created_at)
            )
            return [_model(row) for row in rows]

    def approve(
        self, authorisation_id: str, approval: SealAuthorisationApproval
    ) -> SealAuthorisation:
        """The keeper's code for the terms' SHA-256 makes the authorisation active."""
        found = self.get(authorisation_id)
        if found.state is not AuthorisationState.PENDING:
            raise SealAuthorisationState(f"the authorisation is {found.state.value}, not pending")
        # refusals (wrong code, another digest, replay) are the activation's own 403s
        self.store.redeem(
            approval.activation,
            certificate_serial=found.certificate_serial,
            document_sha256=found.terms_sha256,
            now=self.clock(),
        )
        self.store.signed(approval.activation.activation_id, found.terms_sha256)
        with self.store.registry.session() as session, session.begin():
            row = session.get(SealAuthorisationRow, authorisation_id, with_for_update=True)
            assert row is not None
            if row.state != AuthorisationState.PENDING.value:  # revoked meanwhile
                raise SealAuthorisationState(f"the authorisation is {row.state}, not pending")
            row.state = AuthorisationState.ACTIVE.value
            row.approved_activation = approval.activation.activation_id
            row.approved_at = self.clock()
            return _model(row)

    def revoke(self, authorisation_id: str, by: str) -> SealAuthorisation:
        with self.store.registry.session() as session, session.begin():
            row = session.get(SealAuthorisationRow, authorisation_id, with_for_update=True)
            if row is None:
                raise NotFound("no such seal authorisation")
            if row.state != AuthorisationState.REVOKED.value:
                row.state = AuthorisationState.REVOKED.value
                row.revoked_by, row.revoked_at = by, self.clock()
            return _model(row)

    def use(
        self, authorisation_id: str, record: CertificateRecord, caller: str | None, count: int
    ) -> SealAuthorisation:
        """Count `count` documents against the authorisation, or refuse (403) saying why;
        checked and counted under one row lock, so concurrent batches cannot overrun it."""
        now = self.clock()
        with self.store.registry.session() as session, session.begin():
            row = session.get(SealAuthorisationRow, authorisation_id, with_for_update=True)
            if row is None or row.certificate_serial != record.serial:
                raise SealAuthorisationRefused("no such authorisation for this seal")
            why = _refusal(row, caller, count, now)
            if why is not None:
                raise SealAuthorisationRefused(why)
            row.used_documents += count
            return _model(row)

    def give_back(self, authorisation_id: str, count: int) -> None:
        """Signatures counted by `use` did not happen (HSM down, a bad document)."""
        with self.store.registry.session() as session, session.begin():
            row = session.get(SealAuthorisationRow, authorisation_id, with_for_update=True)
            if row is not None:
                row.used_documents = max(0, row.used_documents - count)


def _utc(value: datetime) -> datetime:
    """A stored time as UTC (SQLite drops the zone; everything stored is UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _refusal(
    row: SealAuthorisationRow, caller: str | None, count: int, now: datetime
) -> str | None:
    if row.state != AuthorisationState.ACTIVE.value:
        return f"the authorisation is {row.state}"
    if now < _utc(row.not_before):
        return f"the authorisation is valid from {_utc(row.not_before).isoformat()}"
    if now >= _utc(row.not_after):
        return f"the authorisation ended at {_utc(row.not_after).isoformat()}"
    if caller not in json.loads(row.callers):
        return f"the caller {caller!r} is not named by the authorisation"
    if row.used_documents + count > row.max_documents:
        left = row.max_documents - row.used_documents
        return f"the authorisation allows {left} more document(s), not {count}"
    return None


def _model(row: SealAuthorisationRow) -> SealAuthorisation:
    return SealAuthorisation(
        id=row.id,
        certificate_serial=row.certificate_serial,
        key_label=row.key_label,
        callers=json.loads(row.callers),
        not_before=_utc(row.not_before),
        not_after=_utc(row.not_after),
        max_documents=row.max_documents,
        used_documents=row.used_documents,
        purpose=row.purpose,
        state=AuthorisationState(row.state),
        terms_sha256=row.terms_sha256,
        requested_by=row.requested_by,
        created_at=_utc(row.created_at),
        approved_activation=row.approved_activation,
        approved_at=aware(row.approved_at) if row.approved_at else None,
        revoked_by=row.revoked_by,
        revoked_at=aware(row.revoked_at) if row.revoked_at else None,
    )
