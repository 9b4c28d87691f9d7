"""The recipient's signing step, second half: one signature per document, stored, recorded.

Order, so that a crash anywhere leaves a consistent envelope: (1) a short read
checks the link, the turn, the pending activation and that every document is still
the revision the activation was asked for; (2) the signer signs each document (the
code proves the person's consent; the signer checks it and the SHA-256); (3) each
signed revision goes to the vault, where storing the same bytes again is a no-op;
(4) one transaction moves every document's `current_sha256`, records
`document.signed` per document and `recipient.signed`, and lets routing advance.
A crash before (4) changes nothing the portal shows: the documents are still the
ones the recipient saw, and they ask for a new code (a used code signs nothing
twice).  A repeated request after (4) finds the step done and answers as before.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from signet.common.clients import SignerClient, StorageClient
from signet.common.clients.base import RemoteError
from signet.common.contracts.signer import (
    ActivationProof,
    Appearance,
    CrossPageSeal,
    SignatureLevel,
    SignOptions,
    TextStamp,
)
from signet.common.contracts.storage import ObjectKind
from signet.common.errors import Conflict, Forbidden, SignetError
from signet.portal.envelopes import routing
from signet.portal.envelopes.attachments import missing_attachments
from signet.portal.envelopes.models import Document, Envelope, EnvelopeField, FieldKind, Recipient
from signet.portal.envelopes.service import EnvelopeService, routing_state
from signet.portal.envelopes.signing import signing_digests
from signet.portal.evidence.record import NOWHERE, Origin, record_event

#: the largest handwritten signature image accepted (decoded PNG bytes)
IMAGE_MAX = 160 * 1024
_PNG = b"\x89PNG\r\n\x1a\n"
_SIGNATURE_KINDS = {FieldKind.SIGNATURE.value}


class ImageInvalid(SignetError):
    status_code = 422
    code = "image_invalid"


def decoded_png(encoded: str) -> bytes:
    """The signature image's bytes, if they are a PNG of at most `IMAGE_MAX` bytes."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImageInvalid("the signature image is not valid base64") from None
    if len(data) > IMAGE_MAX:
        raise ImageInvalid(f"the signature image is over {IMAGE_MAX // 1024} KiB")
    if not data.startswith(_PNG):
        raise ImageInvalid("the signature image is not a PNG")
    return data


@dataclass(frozen=True)
class _Plan:
    """One document's signature, decided from the database before any network call."""

    document_id: str
    before: str
    options: SignOptions


@dataclass
class _Step:
    envelope_id: str
    recipient_id: str
    certificate_serial: str
    plans: list[_Plan] = field(default_factory=list)


def _rect(f: EnvelopeField) -> tuple[float, float, float, float]:
    return (f.x, f.y, f.x + f.width, f.y + f.height)


def _stamps(fields: list[EnvelopeField], today: str) -> list[TextStamp]:
    stamps = []
    for f in fields:
        value = (f.value or {}).get("value")
        if f.kind == FieldKind.DATE.value:
            value = value or today
        elif f.kind == FieldKind.CHECKBOX.value:
            value = "X" if value == "true" else None
        if value:
            stamps.append(TextStamp(page=f.page, rect=_rect(f), text=value))
    return stamps


class SignatureStep:
    def __init__(
        self, envelopes: EnvelopeService, signer: SignerClient, storage: StorageClient
    ) -> None:
        self.envelopes, self.signer, self.storage = envelopes, signer, storage

    def sign(
        self, token: str, activation_id: str, code: str, image: bytes, origin: Origin = NOWHERE
    ) -> None:
        step = self._plan(token, activation_id, code)
        if step is None:
            return  # already signed: the same answer, nothing signed twice
        signed: list[tuple[_Plan, str, str]] = []
        for plan in step.plans:
            pdf = self.storage.get(plan.before)
            try:
                # a document holding only this recipient's text or initials fields is
                # signed without an image: the handwriting goes where a signature field is
                visible = plan.options.appearance or plan.options.cross_page_seal
                shown = image if visible is not None else None
                result = self.signer.sign(pdf, plan.options, shown)
            except RemoteError as refused:
                if refused.status_code == 409 and signed:
                    # the event key signed once and is gone (this signer's rule): the
                    # next activation issues a new certificate; nothing was recorded
                    self._forget_certificate(step)
                raise
            info = self.storage.put(result.pdf, ObjectKind.REVISION, envelope_id=step.envelope_id)
            signed.append((plan, info.sha256, result.certificate_serial))
        self._record(token, step, signed, activation_id, origin)

    def _forget_certificate(self, step: _Step) -> None:
        with self.envelopes.sessions.begin() as session:
            recipient = session.get(Recipient, step.recipient_id)
            if recipient is not None and recipient.certificate_serial == step.certificate_serial:
                recipient.certificate_serial = recipient.activation_id = None
                recipient.activation_sha256 = None

    def _plan(self, token: str, activation_id: str, code: str) -> _Step | None:
        service = self.envelopes
        with service.sessions() as session:
            recipient, envelope = service.by_link(session, token)
            if recipient.locked_at is not None:
                raise Forbidden("this link is locked after too many wrong codes")
            if recipient.identity_verified_at is None:
                raise Forbidden("confirm your identity with the code first")
            if recipient.status == routing.RecipientStatus.SIGNED.value:
                return None
            _may_sign(envelope, recipient)
            missing = missing_attachments(list(envelope.fields), recipient.id)
            if missing:
                raise Conflict(f"upload the requested attachment(s) first: {', '.join(missing)}")
            if recipient.activation_id is None or recipient.certificate_serial is None:
                raise Conflict("ask for an activation code first")
            if activation_id != recipient.activation_id:
                raise Forbidden("this activation is not this recipient's current one")
            digests = signing_digests(envelope, recipient.id)
            if digests != recipient.activation_sha256:
                raise Conflict("the documents changed since the code was sent; ask for a new one")
            step = _Step(envelope.id, recipient.id, recipient.certificate_serial)
            proof = ActivationProof(activation_id=activation_id, code=code)
            today = service.clock().date().isoformat()
            documents = {d.id: d for d in envelope.documents}
            for sha in digests:
                document = next(d for d in documents.values() if d.current_sha256 == sha)
                step.plans.append(
                    _Plan(document.id, sha, self._options(envelope, recipient, document,
                                                         proof, today))
                )  # fmt: skip
            return step

    @staticmethod
    def _options(
        envelope: Envelope, recipient: Recipient, document: Document, proof: ActivationProof,
        today: str,
    ) -> SignOptions:  # fmt: skip
        mine = [
            f for f in envelope.fields
            if f.recipient_id == recipient.id and f.document_id == document.id
        ]  # fmt: skip
        places = [
            Appearance(page=f.page, rect=_rect(f), text=recipient.name[:200])
            for f in mine
            if f.kind in _SIGNATURE_KINDS
        ]
        seals = [f for f in mine if f.kind == FieldKind.CROSS_PAGE_SEAL.value]
        cross_page = (
            CrossPageSeal(y=seals[0].y, height=seals[0].height, width=seals[0].width)
            if seals
            else None
        )
        return SignOptions(
            certificate_serial=recipient.certificate_serial,
            level=SignatureLevel.B_T,
            cross_page_seal=cross_page,
            field_name=f"Signature {recipient.position + 1}",
            reason=f"Signed by {recipient.name[:150]}",
            appearance=places[0] if places else None,
            also_on=places[1:],
            stamps=_stamps(mine, today),
            activation=proof,
        )

    def _record(
        self, token: str, step: _Step, signed: list[tuple[_Plan, str, str]], activation_id: str,
        origin: Origin,
    ) -> None:  # fmt: skip
        service = self.envelopes
        with service.sessions.begin() as session:
            recipient, envelope = service.by_link(session, token)
            if recipient.status == routing.RecipientStatus.SIGNED.value:
                return  # a concurrent request recorded it first
            actor = f"recipient:{recipient.id}"
            for plan, after, serial in signed:
                document = session.get(Document, plan.document_id)
                assert document is not None
                if document.current_sha256 != plan.before:
                    raise Conflict("a document changed while it was being signed")
                document.current_sha256 = after
                record_event(
                    session, envelope.id, "document.signed", actor, origin,
                    document_hashes=[plan.before, after],
                    details={"document": document.id, "before": plan.before, "after": after,
                             "certificate": serial or step.certificate_serial,
                             "activation": activation_id},
                )  # fmt: skip
            recipient.activation_id = None
            service.apply_action(session, envelope, routing.Sign(recipient.id), actor, origin,
                                 actor=recipient.name)  # fmt: skip


def _may_sign(envelope: Envelope, recipient: Recipient) -> None:
    try:
        routing.may_act(routing_state(envelope), recipient.id)
    except routing.Refused as refused:
        raise Forbidden(refused.detail) from None
    if recipient.role != routing.RecipientRole.SIGNER.value:
        raise Forbidden("only a signer signs; an approver approves")
