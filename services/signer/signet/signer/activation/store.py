"""Enrolments and activations in the signer's database (`activation.tables`).

`redeem` loads an activation under a row lock, lets `rules.redeem` decide, stores the
outcome (a wrong code is counted) and only then raises the refusal, in one
transaction, so two concurrent sign requests cannot both use one digest.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from signet.common.contracts.signer import ActivationProof, Contact, ContactChannel
from signet.common.otp import IssuedCode
from signet.signer.activation import rules
from signet.signer.activation.tables import ActivationRow, EnrolmentRow
from signet.signer.registry import Registry
from signet.signer.schema import aware
from sqlalchemy import select


class ActivationStore:
    def __init__(self, registry: Registry, pepper: bytes) -> None:
        self.registry = registry
        self.pepper = pepper

    def enrol(self, serial: str, contact: Contact, by: str, now: datetime) -> Contact | None:
        """Bind `serial` to `contact`; the contact it replaces (kept in the new row)."""
        previous = self.contact_for(serial)
        with self.registry.session() as session, session.begin():
            session.add(
                EnrolmentRow(
                    certificate_serial=serial,
                    channel=contact.channel.value,
                    address=contact.address,
                    enrolled_by=by,
                    enrolled_at=now,
                    previous_channel=previous.channel.value if previous else None,
                    previous_address=previous.address if previous else None,
                )
            )
        return previous

    def enrolment(self, serial: str) -> tuple[Contact, str, datetime, Contact | None] | None:
        """The binding in force: contact, who bound it, when, and the contact it replaced."""
        with self.registry.session() as session:
            row = session.scalars(
                select(EnrolmentRow)
                .where(EnrolmentRow.certificate_serial == serial)
                .order_by(EnrolmentRow.id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            previous = (
                Contact(channel=ContactChannel(row.previous_channel), address=row.previous_address)
                if row.previous_channel and row.previous_address
                else None
            )
            when = aware(row.enrolled_at)
            assert when is not None
            contact = Contact(channel=ContactChannel(row.channel), address=row.address)
            return contact, row.enrolled_by, when, previous

    def contact_for(self, serial: str) -> Contact | None:
        with self.registry.session() as session:
            row = session.scalars(
                select(EnrolmentRow)
                .where(EnrolmentRow.certificate_serial == serial)
                .order_by(EnrolmentRow.id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            return Contact(channel=ContactChannel(row.channel), address=row.address)

    def add(self, activation: rules.Activation) -> None:
        with self.registry.session() as session, session.begin():
            session.add(_row(activation))

    def get(self, activation_id: str) -> rules.Activation | None:
        with self.registry.session() as session:
            row = session.get(ActivationRow, activation_id)
            return _activation(row) if row else None

    def redeem(
        self,
        proof: ActivationProof,
        *,
        certificate_serial: str,
        document_sha256: str,
        now: datetime | None = None,
    ) -> rules.Activation:
        """The activation after `proof` let this document be signed; raises the refusal
        (after storing the counted attempt) otherwise."""
        moment = now or datetime.now(UTC)
        with self.registry.session() as session, session.begin():
            row = session.get(ActivationRow, proof.activation_id, with_for_update=True)
            current = _activation(row) if row else None
            outcome = rules.redeem(
                self.pepper,
                current,
                proof,
                certificate_serial=certificate_serial,
                document_sha256=document_sha256,
                now=moment,
            )
            session.merge(_row(outcome.activation))
        if outcome.refusal is not None:
            raise outcome.refusal
        return outcome.activation

    def give_back(self, activation_id: str, document_sha256: str) -> None:
        """The signature a passed check allowed failed (HSM down, a bad document): the
        digest may be signed again with the same code while it lives."""
        with self.registry.session() as session, session.begin():
            row = session.get(ActivationRow, activation_id, with_for_update=True)
            if row is not None:
                used = set(json.loads(row.used_sha256)) - {document_sha256}
                row.used_sha256 = json.dumps(sorted(used))

    def signed(self, activation_id: str, document_sha256: str) -> rules.Activation:
        """Record that the digest was signed; the activation as it is now (so the caller
        sees whether every digest is signed and an event key must be destroyed)."""
        with self.registry.session() as session, session.begin():
            row = session.get(ActivationRow, activation_id, with_for_update=True)
            assert row is not None
            done = set(json.loads(row.signed_sha256)) | {document_sha256}
            row.signed_sha256 = json.dumps(sorted(done))
            return _activation(row)

    def to_spend(self, now: datetime) -> list[rules.Activation]:
        """Activations not yet marked spent that can sign nothing more (every digest
        used, or expired): the sweep destroys an event key behind each, then calls
        `mark_spent`."""
        with self.registry.session() as session:
            rows = session.scalars(select(ActivationRow).where(ActivationRow.spent_at.is_(None)))
            found = [_activation(row) for row in rows]
        return [activation for activation in found if activation.spent(now)]

    def mark_spent(self, activation_id: str, now: datetime) -> None:
        with self.registry.session() as session, session.begin():
            row = session.get(ActivationRow, activation_id)
            if row is not None and row.spent_at is None:
                row.spent_at = now


def _row(activation: rules.Activation) -> ActivationRow:
    return ActivationRow(
        activation_id=activation.activation_id,
        certificate_serial=activation.certificate_serial,
        channel=activation.contact.channel.value,
        address=activation.contact.address,
        document_sha256=json.dumps(list(activation.document_sha256)),
        used_sha256=json.dumps(sorted(activation.used_sha256)),
        signed_sha256=json.dumps(sorted(activation.signed_sha256)),
        code_digest=activation.code.digest,
        code_purpose=activation.code.purpose,
        expires_at=activation.code.expires_at,
        attempts=activation.code.attempts,
        code_used=activation.code.used,
        issued_at=activation.issued_at,
        verified_at=activation.verified_at,
        # spent_at is left unset: a merge must not clear a spent marker
    )


def _activation(row: ActivationRow) -> rules.Activation:
    expires_at = aware(row.expires_at)
    issued_at = aware(row.issued_at)
    assert expires_at is not None and issued_at is not None
    return rules.Activation(
        activation_id=row.activation_id,
        certificate_serial=row.certificate_serial,
        contact=Contact(channel=ContactChannel(row.channel), address=row.address),
        document_sha256=tuple(json.loads(row.document_sha256)),
        code=IssuedCode(row.code_digest, row.code_purpose, expires_at, row.attempts, row.code_used),
        issued_at=issued_at,
        verified_at=aware(row.verified_at),
        used_sha256=frozenset(json.loads(row.used_sha256)),
        signed_sha256=frozenset(json.loads(row.signed_sha256)),
    )
