"""The decisions of signature activation, free of storage and HTTP.

Kept pure so the same rules hold for every caller (HTTP routes, in-process callers)
and can be tested without a database: a store loads an `Activation`, asks `redeem`
what the row must become, persists it, and only then raises the refusal (so a wrong
code is counted even though the request fails).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from signet.common.contracts.signer import (
    ActivationChallenge,
    ActivationProof,
    ActivationRecord,
    Contact,
    ContactChannel,
)
from signet.common.errors import Conflict, Forbidden
from signet.common.otp import (
    CODE_LIFETIME,
    MAX_ATTEMPTS,
    CodeVerdict,
    IssuedCode,
    check_code,
    issue_code,
)


class ActivationRefused(Forbidden):
    code = "activation_invalid"


class ActivationInvalid(ActivationRefused):
    """Unknown id, or an activation of another key: the caller learns nothing more."""

    code = "activation_invalid"


class ActivationCodeWrong(ActivationRefused):
    code = "activation_code_wrong"


class ActivationLocked(ActivationRefused):
    code = "activation_locked"


class ActivationExpired(ActivationRefused):
    code = "activation_expired"


class ActivationDocumentMismatch(ActivationRefused):
    code = "activation_document_mismatch"


class ActivationUsed(ActivationRefused):
    code = "activation_used"


class KeyNotEnrolled(Conflict):
    code = "key_not_enrolled"


class ActivationRequired(ActivationRefused):
    code = "activation_required"


class KeyNotActivatable(Conflict):
    code = "key_not_activatable"


METHODS = {ContactChannel.SMS: "sms-otp", ContactChannel.EMAIL: "email-otp"}
#: An expired activation's event key is destroyed only this long after the expiry, so a
#: signature whose code was checked just before it can still finish.
SPEND_GRACE = timedelta(minutes=1)


def mask_contact(contact: Contact) -> str:
    """The contact as the portal and the evidence may show it ("l***@example.com",
    "+86*******0000"): enough for a person to recognise, not enough to harvest."""
    if contact.channel is ContactChannel.EMAIL:
        local, _, domain = contact.address.rpartition("@")
        return f"{local[:1]}***@{domain}"
    number = contact.address
    return number[:3] + "*" * max(0, len(number) - 7) + number[-4:]


def _purpose(activation_id: str, serial: str, digests: Sequence[str]) -> str:
    """Binds the code to this activation, this key and these documents (see otp.py)."""
    material = "\x00".join([activation_id, serial, *digests]).encode()
    return "activation:" + hashlib.sha256(material).hexdigest()


@dataclass(frozen=True)
class Activation:
    """One activation as a store keeps it (the code only as its HMAC)."""

    activation_id: str
    certificate_serial: str
    contact: Contact
    document_sha256: tuple[str, ...]
    code: IssuedCode
    issued_at: datetime
    verified_at: datetime | None = None
    #: digests whose code check passed (each passes once)
    used_sha256: frozenset[str] = field(default_factory=frozenset)
    #: digests actually signed (a check whose signing failed is given back)
    signed_sha256: frozenset[str] = field(default_factory=frozenset)

    @property
    def purpose(self) -> str:
        return _purpose(self.activation_id, self.certificate_serial, self.document_sha256)

    def challenge(self) -> ActivationChallenge:
        return ActivationChallenge(
            activation_id=self.activation_id,
            channel=self.contact.channel,
            to=mask_contact(self.contact),
            expires_at=self.code.expires_at,
            attempts_left=max(0, MAX_ATTEMPTS - self.code.attempts),
        )

    def record(self) -> ActivationRecord:
        return ActivationRecord(
            activation_id=self.activation_id,
            certificate_serial=self.certificate_serial,
            method=METHODS[self.contact.channel],
            channel=self.contact.channel,
            to=mask_contact(self.contact),
            document_sha256=list(self.document_sha256),
            issued_at=self.issued_at,
            verified_at=self.verified_at,
        )

    def spent(self, now: datetime) -> bool:
        """Whether an event key behind this activation must now be destroyed: every
        digest signed, or the code expired (used or not, `SPEND_GRACE` ago) so nothing
        more can sign with it."""
        return (
            set(self.document_sha256) <= self.signed_sha256
            or now >= self.code.expires_at + SPEND_GRACE
        )


def new_activation(
    pepper: bytes,
    certificate_serial: str,
    contact: Contact,
    document_sha256: Sequence[str],
    *,
    now: datetime | None = None,
    lifetime: timedelta = CODE_LIFETIME,
) -> tuple[str, Activation]:
    """A fresh activation and its code (the code goes to the contact, never stored)."""
    moment = now or datetime.now(UTC)
    activation_id = "act_" + secrets.token_urlsafe(18)
    digests = tuple(dict.fromkeys(document_sha256))  # order kept, duplicates dropped
    code, issued = issue_code(
        pepper,
        _purpose(activation_id, certificate_serial, digests),
        now=moment,
        lifetime=lifetime,
    )
    activation = Activation(activation_id, certificate_serial, contact, digests, issued, moment)
    return code, activation


@dataclass(frozen=True)
class Redemption:
    """What `redeem` decided: the row as it must be stored, and the refusal (if any)
    to raise after storing it."""

    activation: Activation
    refusal: ActivationRefused | None


def redeem(
    pepper: bytes,
    activation: Activation | None,
    proof: ActivationProof,
    *,
    certificate_serial: str,
    document_sha256: str,
    now: datetime | None = None,
) -> Redemption:
    """Decide whether `proof` lets `certificate_serial` sign the document `document_sha256`.

    The code is checked first (and counted), then the document; one code signs each of
    its digests once, until it expires.  An unknown activation or one of another key
    raises `ActivationInvalid` at once: there is nothing to store."""
    moment = now or datetime.now(UTC)
    if activation is None or not hmac.compare_digest(
        activation.certificate_serial.encode(), certificate_serial.encode()
    ):
        raise ActivationInvalid("no such activation for this key")
    # A code verified once still signs the activation's other documents: check it as
    # not yet used so the comparison (and its timing) is the same every time.
    stored = replace(activation.code, used=False)
    checked = check_code(pepper, stored, proof.code, purpose=activation.purpose, now=moment)
    row = replace(activation, code=replace(checked.record, used=activation.code.used))
    if checked.verdict is CodeVerdict.WRONG:
        return Redemption(
            row,
            ActivationCodeWrong(f"the activation code is wrong; {checked.remaining} attempts left"),
        )
    if checked.verdict is CodeVerdict.LOCKED:
        return Redemption(row, ActivationLocked("too many wrong codes: request a new activation"))
    if checked.verdict is CodeVerdict.EXPIRED:
        return Redemption(row, ActivationExpired("the activation code has expired"))
    if document_sha256 not in activation.document_sha256:
        return Redemption(
            row, ActivationDocumentMismatch("this document is not one the code was issued for")
        )
    if document_sha256 in activation.used_sha256:
        return Redemption(row, ActivationUsed("this document was already signed with this code"))
    signed = replace(
        row,
        code=replace(row.code, used=True),
        verified_at=activation.verified_at or moment,
        used_sha256=activation.used_sha256 | {document_sha256},
    )
    return Redemption(signed, None)
