"""The recipient's signing step, first half: their event certificate and the activation.

A recipient signs with a one-time **event certificate** the signer issues for them
(an external person; employees too until SSO exists), naming the identity check that
was passed and the contact it used: that contact is where the signer sends the
activation code, so the portal never sees the code (DESIGN.md "Signature
activation").  The certificate is issued once per recipient and step and kept on the
recipient row; a retried request reuses it.

The activation is bound to the SHA-256 of the exact revisions to be signed: the
current revision of each document holding this recipient's fields (with no fields,
the first document).  A document that changes after the activation (another signer
of the same group signed first) no longer matches, and the signer refuses; the
recipient asks for a new code.  Network calls happen outside the database
transactions: a slow signer holds no lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from signet.common.clients import SignerClient
from signet.common.contracts.signer import (
    ActivationChallenge,
    ActivationRequest,
    CertificateKind,
    Contact,
    ContactChannel,
    IdentityVerification,
    IssueCertificateRequest,
    SubjectIdentity,
)
from signet.common.errors import Forbidden
from signet.portal.envelopes import routing
from signet.portal.envelopes.models import Envelope, Recipient
from signet.portal.envelopes.service import EnvelopeService, routing_state
from signet.portal.evidence.record import NOWHERE, Origin, record_event

#: how the identity check's method names the channel its code went by
_METHOD_CHANNELS = {"otp-email": ContactChannel.EMAIL, "otp-sms": ContactChannel.SMS}


@dataclass(frozen=True)
class _Step:
    """What one signing step needs from the database, read in one short transaction."""

    envelope_id: str
    title: str
    recipient_id: str
    name: str
    email: str | None
    locale: str
    contact: Contact
    method: str
    verified_at: datetime
    certificate_serial: str | None
    digests: list[str]


def signing_digests(envelope: Envelope, recipient_id: str) -> list[str]:
    """The SHA-256 of each revision this recipient's signature will cover."""
    holding = {f.document_id for f in envelope.fields if f.recipient_id == recipient_id}
    documents = [d for d in envelope.documents if d.id in holding] or envelope.documents[:1]
    return [d.current_sha256 for d in documents]


class SigningService:
    def __init__(self, envelopes: EnvelopeService, signer: SignerClient) -> None:
        self.envelopes, self.signer = envelopes, signer

    def request_activation(self, token: str, origin: Origin = NOWHERE) -> ActivationChallenge:
        """The signer sends the person a code for exactly these revisions; the portal
        answers where it went (masked) and until when it is valid."""
        step = self._step(token)
        serial = step.certificate_serial or self._certificate(step, origin)
        request = ActivationRequest(
            certificate_serial=serial, document_sha256=step.digests,
            locale=step.locale if len(step.locale) in {2, 5} else "en", purpose=step.title,
        )  # fmt: skip
        challenge = self.signer.request_activation(request)
        with self.envelopes.sessions.begin() as session:
            recipient = session.get(Recipient, step.recipient_id)
            assert recipient is not None
            recipient.activation_id = challenge.activation_id
            recipient.activation_sha256 = step.digests
            recipient.activation_requested_at = self.envelopes.clock()
            record_event(
                session, step.envelope_id, "recipient.activation_requested",
                f"recipient:{step.recipient_id}", origin, auth_method=step.method,
                document_hashes=step.digests,
                details={"activation": challenge.activation_id, "certificate": serial,
                         "channel": challenge.channel.value, "to": challenge.to},
            )  # fmt: skip
        return challenge

    def _step(self, token: str) -> _Step:
        service = self.envelopes
        with service.sessions() as session:
            recipient, envelope = service.by_link(session, token)
            if recipient.locked_at is not None:
                raise Forbidden("this link is locked after too many wrong codes")
            verified_at, method = recipient.identity_verified_at, recipient.identity_method
            if verified_at is None or method is None:
                raise Forbidden("confirm your identity with the code first")
            try:
                routing.may_act(routing_state(envelope), recipient.id)
            except routing.Refused as refused:
                raise Forbidden(refused.detail) from None
            if recipient.role != routing.RecipientRole.SIGNER.value:
                raise Forbidden("only a signer signs; an approver approves")
            return _Step(
                envelope.id, envelope.title, recipient.id, recipient.name, recipient.email,
                recipient.locale, _contact(recipient, method), method, verified_at,
                recipient.certificate_serial, signing_digests(envelope, recipient.id),
            )  # fmt: skip

    def _certificate(self, step: _Step, origin: Origin) -> str:
        """The recipient's event certificate, issued now and kept on their row."""
        info = self.signer.issue_certificate(
            IssueCertificateRequest(
                kind=CertificateKind.EVENT,
                subject=SubjectIdentity(common_name=step.name[:64], email=step.email),
                identity_verification=IdentityVerification(
                    method=step.method,
                    reference=f"envelope:{step.envelope_id}/recipient:{step.recipient_id}",
                    verified_at=step.verified_at,
                ),
                contact=step.contact,
            )
        )
        with self.envelopes.sessions.begin() as session:
            recipient = session.get(Recipient, step.recipient_id)
            assert recipient is not None
            if recipient.certificate_serial is not None:
                # a concurrent request won; its certificate is the recipient's
                return recipient.certificate_serial
            recipient.certificate_serial = info.serial
            record_event(
                session, step.envelope_id, "recipient.certificate_issued",
                f"recipient:{step.recipient_id}", origin, auth_method=step.method,
                details={"certificate": info.serial, "kind": "event",
                         "fingerprint_sha256": info.fingerprint_sha256},
            )  # fmt: skip
        return info.serial


def _contact(recipient: Recipient, method: str) -> Contact:
    """The channel and address the identity check used: where the code will go."""
    channel = _METHOD_CHANNELS.get(method)
    if channel is ContactChannel.SMS and recipient.mobile:
        return Contact(channel=channel, address=recipient.mobile)
    if recipient.email:
        return Contact(channel=ContactChannel.EMAIL, address=recipient.email)
    assert recipient.mobile is not None  # a recipient has an e-mail or a mobile
    return Contact(channel=ContactChannel.SMS, address=recipient.mobile)
