"""Signature activation as the signer runs it (DESIGN.md "Signature activation").

A person's key and an event key sign only what their holder confirmed: the portal
asks for an activation naming the key and the SHA-256 of every revision to sign; the
signer makes a code, sends it itself to the contact bound to the key (an
administrator's enrolment for a person's key, the certificate's own contact for an
event key), and later signs a document only when the sign request carries that code
and the document is one of those digests.  The portal relays what the person typed
and never sees the code.  Every path that signs with such a key goes through
`authorise`: the HTTP route, in-process callers, and batches (which refuse them).

An event key is destroyed when its activation can sign nothing more: every digest
signed, or the code expired (`sweep`, run before each activation and signature).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from signet.common.contracts.signer import (
    ActivationChallenge,
    ActivationProof,
    ActivationRecord,
    ActivationRequest,
    CertificateKind,
    Contact,
    ContactChannel,
    EnrolmentInfo,
    KeyEnrolment,
)
from signet.common.errors import NotFound, SignetError
from signet.common.notify import Channel, DeliveryState, Message, Notice, render
from signet.common.otp import CODE_LIFETIME
from signet.signer.activation import rules
from signet.signer.activation.outbox import Outbox
from signet.signer.activation.seals import SealAuthorisations, keeper_enrolled
from signet.signer.activation.store import ActivationStore
from signet.signer.pki.ca import CertificateAuthority
from signet.signer.registry import CertificateRecord

log = logging.getLogger(__name__)

#: Kinds whose every signature needs the holder's activation.  A seal needs its
#: keeper's approval or a standing authorisation once a keeper is enrolled
#: (`signet.signer.activation.seals`); without one it signs on the caller's token.
ACTIVATED_KINDS = frozenset({CertificateKind.PERSON.value, CertificateKind.EVENT.value})
#: Kinds an administrator may bind a contact to (an event key has its own, named in
#: its certificate; a CA or TSA key signs nothing a person confirms).
ENROLLED_KINDS = frozenset({CertificateKind.PERSON.value, CertificateKind.SEAL.value})
EVENT_ENROLMENT = "event-certificate"


class CodeNotSent(SignetError):
    """The gateway refused or could not take the message: the person gets no code."""

    status_code = 502
    code = "activation_code_not_sent"


def load_pepper(configured: str | None, home: Path) -> bytes:
    """The HMAC key of activation codes: the setting, or a random one made once in
    `home` (one signer; replicas share the setting)."""
    if configured:
        return configured.encode()
    path = home / "activation-pepper"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        pepper = secrets.token_bytes(32)
        try:
            with path.open("xb") as file:  # another process may win: read theirs
                path.chmod(0o600)
                file.write(pepper)
        except FileExistsError:
            return path.read_bytes()
        return pepper


class ActivationService:
    def __init__(
        self,
        store: ActivationStore,
        outbox: Outbox,
        ca: Callable[[], CertificateAuthority],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.outbox, self._ca, self.clock = store, outbox, ca, clock
        self.seals = SealAuthorisations(store, clock=clock)

    def needs_activation(self, record: CertificateRecord) -> bool:
        """A person's or event key always; a seal once its keeper is enrolled."""
        return record.kind in ACTIVATED_KINDS or keeper_enrolled(self.store, record)

    # -- contacts ------------------------------------------------------------------------

    def enrol(self, enrolment: KeyEnrolment, by: str) -> EnrolmentInfo:
        """An administrator binds a person's or seal keeper's key to a contact."""
        record = self._certificate(enrolment.certificate_serial, enrolment.key_label)
        if record.kind not in ENROLLED_KINDS:
            raise rules.KeyNotActivatable(
                f"a {record.kind} key is not enrolled: "
                + (
                    "an event certificate names its contact"
                    if record.kind == CertificateKind.EVENT.value
                    else "it signs nothing a person confirms"
                )
            )
        self.store.enrol(record.serial, enrolment.contact, by, self.clock())
        return self.enrolment(record.serial)

    def bind_event_contact(self, serial: str, contact: Contact) -> None:
        """An event certificate's contact, recorded as its enrolment when it is issued."""
        self.store.enrol(serial, contact, EVENT_ENROLMENT, self.clock())

    def enrolment(self, serial: str) -> EnrolmentInfo:
        record = self._certificate(serial, None)
        found = self.store.enrolment(record.serial)
        if found is None:
            raise NotFound(f"the key of certificate {record.serial} is not enrolled")
        contact, by, when, previous = found
        return EnrolmentInfo(
            certificate_serial=record.serial,
            key_label=record.key_label,
            contact=contact,
            enrolled_by=by,
            enrolled_at=when,
            previous=previous,
        )

    # -- activations ---------------------------------------------------------------------

    def request(self, request: ActivationRequest) -> ActivationChallenge:
        """Make an activation and send its code to the key's bound contact."""
        self.sweep()
        record = self._certificate(request.certificate_serial, request.key_label)
        if not self.needs_activation(record):
            raise rules.KeyNotActivatable(
                f"a {record.kind} key is not activated by its holder (it signs with the "
                "service's authority; a seal once its keeper is enrolled)"
            )
        self._ca().signing_material(record.serial)  # revoked, expired or spent: 409 now
        contact = self.store.contact_for(record.serial)
        if contact is None:
            raise rules.KeyNotEnrolled(
                f"the key of certificate {record.serial} has no bound contact: an "
                "administrator enrols it first (POST /v1/enrolments)"
            )
        code, activation = rules.new_activation(
            self.store.pepper, record.serial, contact, request.document_sha256, now=self.clock()
        )
        self.store.add(activation)
        subject, body = render(
            Notice.INTENT_CODE,
            request.locale,
            title=request.purpose or "your document",
            code=code,
            digest=_digest_label(activation.document_sha256),
            minutes=str(int(CODE_LIFETIME.total_seconds() // 60)),
        )
        channel = Channel.SMS if contact.channel is ContactChannel.SMS else Channel.EMAIL
        message = Message(channel, contact.address, subject, body, request.locale, secret=code)
        delivery = self.outbox.send(activation.activation_id, message)
        if delivery.state is DeliveryState.FAILED:
            raise CodeNotSent(f"the code could not be sent: {delivery.detail}")
        log.info(
            "activation %s for %s sent by %s (%s)",
            activation.activation_id, record.serial, contact.channel.value, delivery.state.value,
        )  # fmt: skip
        return activation.challenge()

    def record(self, activation_id: str) -> ActivationRecord:
        activation = self.store.get(activation_id)
        if activation is None:
            raise NotFound("no such activation")
        return activation.record()

    # -- signing -------------------------------------------------------------------------

    def authorise(
        self, record: CertificateRecord, proof: ActivationProof | None, document_sha256: str
    ) -> rules.Activation:
        """Let this key sign this document once, or raise the refusal (403)."""
        self.sweep()
        if proof is None:
            raise rules.ActivationRequired(
                f"a {record.kind} key signs only with its holder's activation "
                "(options.activation: request one with POST /v1/activations)"
                + (
                    ", or under a standing seal-use authorisation (options.seal_authorisation)"
                    if record.kind == CertificateKind.SEAL.value
                    else ""
                )
            )
        return self.store.redeem(
            proof,
            certificate_serial=record.serial,
            document_sha256=document_sha256,
            now=self.clock(),
        )

    def failed(self, activation: rules.Activation, document_sha256: str) -> None:
        """The signature `authorise` allowed did not happen: the code may sign it again."""
        self.store.give_back(activation.activation_id, document_sha256)

    def signed(self, record: CertificateRecord, activation_id: str, document_sha256: str) -> None:
        """Record the signature; an event key whose documents are all signed is destroyed."""
        activation = self.store.signed(activation_id, document_sha256)
        if activation.spent(self.clock()):
            self._spend(activation)

    def sweep(self) -> None:
        """Destroy the event keys of activations that can sign nothing more."""
        for activation in self.store.to_spend(self.clock()):
            self._spend(activation)

    def _spend(self, activation: rules.Activation) -> None:
        ca = self._ca()
        record = ca.registry.get(activation.certificate_serial)
        if record is not None and record.kind == CertificateKind.EVENT.value:
            ca.spend_event_key(record)
        self.store.mark_spent(activation.activation_id, self.clock())

    # -- helpers -------------------------------------------------------------------------

    def _certificate(self, serial: str | None, key_label: str | None) -> CertificateRecord:
        registry = self.store.registry
        record = (
            registry.get(serial.lower())
            if serial is not None
            else registry.latest_for_key(key_label or "")
        )
        if record is None:
            raise NotFound(
                f"no certificate with serial {serial}"
                if serial is not None
                else f"no certificate for HSM key {key_label!r}"
            )
        return record


def _digest_label(digests: tuple[str, ...]) -> str:
    """The digest(s) as the message shows them: enough to compare with the portal's
    screen, short enough for an SMS."""
    first = digests[0][:16]
    return first if len(digests) == 1 else f"{first} +{len(digests) - 1}"
