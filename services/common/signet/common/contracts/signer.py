"""Contracts of the signer service's API (`/v1/certificates`, `/v1/sign`, `/v1/verify`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from signet.common.contracts.storage import unsafe_character

HexSerial = Annotated[
    str, Field(pattern=r"^[0-9a-f]{1,64}$", description="Certificate serial, lowercase hex")
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CertificateKind(StrEnum):
    """What a certificate is for.  `event` keys sign exactly once and are then destroyed."""

    ROOT = "root"
    ISSUING = "issuing"
    TSA = "tsa"
    PERSON = "person"
    SEAL = "seal"
    EVENT = "event"


class KeyPurpose(StrEnum):
    """What an HSM key may do, recorded when the key is made and never changed.

    The CA certifies a key only for its purpose, and only the ledger seal signs raw
    digests: a CA, TSA or person key can never be turned into anything else."""

    ROOT = "root"
    ISSUING = "issuing"
    TSA = "tsa"
    LEDGER_SEAL = "ledger_seal"  # signs the evidence ledger's tree heads (raw digests)
    SEAL = "seal"  # an organisation's seal
    PERSON = "person"
    EVENT = "event"


#: Signet's certificate policy arc (ITU-T X.667 UUID OID, no registration needed).
POLICY_ARC = "2.25.258957351307187465095418553474553367133"
#: The ledger seal's own extended key usage and policy: `verify-evidence` accepts tree
#: heads only from a certificate carrying them, so no other seal under the root can
#: stand in for the ledger's.
LEDGER_SEAL_EKU = f"{POLICY_ARC}.3.1"
LEDGER_SEAL_POLICY_OID = f"{POLICY_ARC}.1.3"


class KeyAlgorithmName(StrEnum):
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"


class RevocationReason(StrEnum):
    """RFC 5280 CRLReason values a caller may give."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key_compromise"
    AFFILIATION_CHANGED = "affiliation_changed"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation_of_operation"


#: How far in the future an identity verification's time may lie (clock skew between the
#: portal and the signer), and the earliest time one is believed.
VERIFIED_AT_SKEW = timedelta(minutes=5)
VERIFIED_AT_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def _name_text(value: str) -> str:
    found = unsafe_character(value)
    if found is not None:
        raise ValueError(f"contains the control or formatting character {found}")
    return value


#: A certificate name's attribute: shown by every validator, kept in the certificate for
#: its lifetime, so no NUL (truncates in C validators), ESC (terminal sequences), CR/LF,
#: other controls, lone surrogates or bidi overrides.
NameText = Annotated[str, AfterValidator(_name_text)]


def _verified_at(value: datetime) -> datetime:
    if value < VERIFIED_AT_EARLIEST:
        raise ValueError(f"is before {VERIFIED_AT_EARLIEST:%Y-%m-%d}")
    if value > datetime.now(UTC) + VERIFIED_AT_SKEW:
        raise ValueError("is in the future")
    return value


Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256, lowercase hex")]
Mobile = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$", examples=["+8613800000000"])]


class ContactChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class Contact(_Model):
    """Where a key's activation codes go: bound to the key when it is enrolled (a person's
    or a seal keeper's key) or named in the event certificate; never given by a sign
    request (DESIGN.md, "Signature activation")."""

    channel: ContactChannel
    address: str = Field(min_length=3, max_length=254, examples=["li.wei@example.com"])

    @model_validator(mode="after")
    def _address_fits(self) -> Contact:
        if self.channel is ContactChannel.SMS:
            if not re.fullmatch(r"\+[1-9][0-9]{6,14}", self.address):
                raise ValueError("an SMS contact is a mobile number in E.164 (+8613800000000)")
        elif not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.address):
            raise ValueError("an e-mail contact needs a valid address")
        return self


class SubjectIdentity(_Model):
    """Who the certificate names.  Shown to everyone who validates the signature."""

    common_name: NameText = Field(min_length=1, max_length=64, examples=["Li Wei"])
    email: NameText | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    organization: NameText | None = Field(default=None, max_length=64)
    organizational_unit: NameText | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class IdentityVerification(_Model):
    """How the signer's identity was checked before the certificate was issued.

    Recorded in the certificate (a user notice in its policy) and on the
    evidence record: the "identity verified by a third party" condition.
    """

    method: NameText = Field(min_length=2, max_length=32, examples=["sms-otp", "email-otp", "sso"])
    reference: NameText | None = Field(
        default=None, max_length=128, description="e.g. the envelope/recipient the check belongs to"
    )
    verified_at: Annotated[AwareDatetime, AfterValidator(_verified_at)] = Field(
        description="when the check passed: with a time zone, not in the future, not before 2000"
    )


class IssueCertificateRequest(_Model):
    kind: Literal[CertificateKind.PERSON, CertificateKind.SEAL, CertificateKind.EVENT]
    subject: SubjectIdentity
    key_algorithm: KeyAlgorithmName = KeyAlgorithmName.EC_P256
    key_label: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Certify an existing HSM key (person/seal); a new key is made if omitted",
    )
    validity_days: int | None = Field(default=None, ge=1, le=3650)
    identity_verification: IdentityVerification | None = None
    contact: Contact | None = Field(
        default=None,
        description="an event certificate's activation contact (required for kind event): "
        "the e-mail or mobile the identity check used, named in the certificate",
    )

    @model_validator(mode="after")
    def _event_needs_verification(self) -> IssueCertificateRequest:
        if self.kind is CertificateKind.EVENT:
            if self.identity_verification is None:
                raise ValueError("an event certificate needs identity_verification")
            if self.key_label is not None:
                raise ValueError("an event certificate always gets a fresh key")
            if self.contact is None:
                raise ValueError(
                    "an event certificate needs the contact its activation codes go to"
                )
        return self


class CertificateInfo(_Model):
    serial: HexSerial
    kind: CertificateKind
    subject: str
    issuer: str
    key_label: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    status: Literal["good", "revoked", "expired"]
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    key_destroyed: bool = False
    pem: str


class RevokeRequest(_Model):
    reason: RevocationReason = RevocationReason.UNSPECIFIED


class SignatureLevel(StrEnum):
    """PAdES baseline levels (ETSI EN 319 142-1)."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"


class DocMdpPermission(StrEnum):
    NO_CHANGES = "no-changes"
    FILL_FORMS = "fill-forms"
    ANNOTATE = "annotate"


class Appearance(_Model):
    """A visible signature.  The PNG (handwriting or seal) travels as its own multipart part."""

    page: int = Field(default=1, description="1 = first page, -1 = last page")
    rect: tuple[float, float, float, float] = Field(
        description="x1, y1, x2, y2 in PDF points from the page's bottom-left corner"
    )
    show_name: bool = True
    show_time: bool = True
    text: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _sane(self) -> Appearance:
        x1, y1, x2, y2 = self.rect
        if x2 <= x1 or y2 <= y1:
            raise ValueError("rect must be x1 < x2 and y1 < y2")
        if self.page == 0:
            raise ValueError("page numbers start at 1 (or -1 for the last page)")
        return self


class CrossPageSeal(_Model):
    """骑缝章: the seal image cut into as many vertical strips as the document has pages,
    strip *i* at the right edge of page *i*, so that the pages, fanned out, line up into
    the whole seal.  Every strip is a widget of the one signature, which covers them all."""

    y: float = Field(ge=0, le=14400, description="bottom of the strips, in PDF points")
    height: float = Field(gt=0, le=400, description="the seal's height, in PDF points")
    width: float = Field(
        default=0,
        ge=0,
        le=400,
        description="the whole seal's width across all strips; 0: from the image's proportions",
    )


class FieldPlacement(_Model):
    """An empty signature field for a later signer, placed by the sender."""

    name: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_. -]+$")
    page: int = Field(default=1, description="1 = first page, -1 = last page")
    rect: tuple[float, float, float, float]


class KeyEnrolment(_Model):
    """An admin binds a person's or seal keeper's key to the contact that will receive
    its activation codes (recorded; a later enrolment replaces it, also recorded)."""

    certificate_serial: HexSerial | None = None
    key_label: str | None = Field(default=None, max_length=64)
    contact: Contact

    @model_validator(mode="after")
    def _one_key(self) -> KeyEnrolment:
        if (self.certificate_serial is None) == (self.key_label is None):
            raise ValueError("give exactly one of certificate_serial or key_label")
        return self


class EnrolmentInfo(_Model):
    """A key's contact as bound now, for an administrator (the contact in full)."""

    certificate_serial: HexSerial
    key_label: str
    contact: Contact
    enrolled_by: str
    enrolled_at: datetime
    #: the contact this enrolment replaced, if any
    previous: Contact | None = None


class SignerOutboxEntry(_Model):
    """One activation code's message in the signer's outbox (`GET /v1/outbox`).  The
    body shows the code only while the message is `held` (no gateway configured)."""

    id: int
    activation_id: str
    channel: ContactChannel
    to: str
    locale: str
    subject: str
    body: str
    state: str = Field(examples=["held", "accepted", "failed"])
    detail: str
    created_at: datetime
    updated_at: datetime


class ActivationRequest(_Model):
    """The portal asks for an activation before a person signs: which key, and the
    SHA-256 of every exact revision this one code will allow the key to sign."""

    certificate_serial: HexSerial | None = None
    key_label: str | None = Field(default=None, max_length=64)
    document_sha256: list[Sha256Hex] = Field(min_length=1, max_length=50)
    locale: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    #: shown in the message so the person knows what they confirm ("Lease 2027", ...)
    purpose: str | None = Field(default=None, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")

    @model_validator(mode="after")
    def _one_key(self) -> ActivationRequest:
        if (self.certificate_serial is None) == (self.key_label is None):
            raise ValueError("give exactly one of certificate_serial or key_label")
        return self


class ActivationChallenge(_Model):
    """What the portal may know of an activation: never the code."""

    activation_id: str
    channel: ContactChannel
    #: the contact, partly hidden ("l***@example.com", "+86*******0000")
    to: str
    expires_at: datetime
    attempts_left: int


class ActivationProof(_Model):
    """What the person typed, relayed by the portal with the sign request."""

    activation_id: str = Field(min_length=1, max_length=64)
    code: str = Field(pattern=r"^[0-9]{6}$")


class ActivationRecord(_Model):
    """The evidence of one activation, once it was used to sign."""

    activation_id: str
    certificate_serial: HexSerial
    method: str = Field(examples=["sms-otp", "email-otp"])
    channel: ContactChannel
    to: str
    document_sha256: list[Sha256Hex]
    issued_at: datetime
    verified_at: datetime | None


class TextStamp(_Model):
    """Text written into the revision being signed (a date, text or initials field's
    value), so that the signature covers it."""

    page: int = Field(default=1, description="1 = first page, -1 = last page")
    rect: tuple[float, float, float, float]
    text: str = Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]+$")


class CompleteOptions(_Model):
    """`POST /v1/complete`: make a finished document B-LTA (every signature's validation
    data in the DSS, then a document timestamp)."""

    timestamp_authority: str | None = Field(
        default=None,
        max_length=63,
        description="a configured TSA's name; None: the appliance's own",
    )


class SignOptions(_Model):
    """Everything about one signature except the document and the image."""

    certificate_serial: HexSerial | None = None
    key_label: str | None = Field(default=None, max_length=64)
    level: SignatureLevel = SignatureLevel.B_T
    field_name: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_. -]+$")
    reason: str | None = Field(default=None, max_length=200)
    location: str | None = Field(default=None, max_length=200)
    certify: bool = False
    docmdp: DocMdpPermission = DocMdpPermission.FILL_FORMS
    appearance: Appearance | None = None
    prepare_fields: list[FieldPlacement] = Field(
        default_factory=list,
        max_length=100,
        description="empty signature fields for later signers, created in this revision; "
        "needed after a certification signature, which forbids new fields",
    )
    also_on: list[Appearance] = Field(
        default_factory=list,
        max_length=50,
        description="more places for the same signature's appearance (a recipient with "
        "several signature fields: several appearances, one signature)",
    )
    stamps: list[TextStamp] = Field(
        default_factory=list,
        max_length=200,
        description="field values (date, text, initials) written into the signed revision",
    )
    cross_page_seal: CrossPageSeal | None = Field(
        default=None,
        description="a cross-page seal (骑缝章) of the image over every page's right edge "
        "(documents of 2 to 500 pages); needs the image",
    )
    activation: ActivationProof | None = Field(
        default=None,
        description="required for a person's or an event key, and for a seal whose keeper "
        "is enrolled unless `seal_authorisation` is given: the activation the signer issued "
        "for this document's SHA-256, with the code the person (or keeper) typed",
    )
    seal_authorisation: str | None = Field(
        default=None,
        pattern=r"^sa_[A-Za-z0-9_-]{8,60}$",
        description="a standing seal-use authorisation (`POST /v1/seal-authorisations`) "
        "this signature or batch is made under, for a seal whose keeper is enrolled",
    )
    timestamp_authority: str | None = Field(
        default=None,
        max_length=63,
        description="a configured TSA's name; None: the appliance's own",
    )

    @model_validator(mode="after")
    def _one_key(self) -> SignOptions:
        if (self.certificate_serial is None) == (self.key_label is None):
            raise ValueError(
                "give exactly one of certificate_serial or key_label (the organisation seal "
                'that `signet up` makes is key_label "signet-default-seal")'
            )
        return self


class CertificateSummary(_Model):
    subject: str
    issuer: str
    serial: str
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime


class TimestampReport(_Model):
    time: datetime
    valid: bool
    trusted: bool
    tsa: str | None


class SignatureReport(_Model):
    field_name: str
    kind: Literal["signature", "document-timestamp"]
    signer: CertificateSummary | None
    chain: list[CertificateSummary]
    valid: bool = Field(description="cryptographically sound and intact")
    intact: bool
    trusted: bool = Field(description="chains to a trusted root and is not revoked")
    trust_problem: str | None = None
    signing_time: datetime | None = Field(description="time claimed by the signer (untrusted)")
    timestamp: TimestampReport | None = None
    coverage: Literal["entire-file", "entire-revision", "partial"]
    modifications: str = Field(
        description="none / lta-updates / form-filling / annotations / other"
    )
    docmdp_ok: bool | None = None
    sub_filter: str | None = None
    ok: bool = Field(description="valid, trusted, and no disallowed modification since")


class VerifyResponse(_Model):
    document_sha256: str
    signatures: list[SignatureReport]
    valid: bool = Field(description="at least one signature, and every signature ok")


# -- batch sealing (`/v1/batches`) --------------------------------------------------------


class BatchItemState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class BatchItem(_Model):
    index: int
    filename: str
    state: BatchItemState
    error: str | None = Field(default=None, description="why this document was not signed")
    input_sha256: str
    output_sha256: str | None = None


class BatchStatus(_Model):
    id: str
    state: Literal["running", "finished"]
    created_at: datetime
    finished_at: datetime | None = None
    level: SignatureLevel
    certificate_serial: str
    total: int
    done: int
    failed: int
    pending: int
    items: list[BatchItem] = Field(default_factory=list)


# -- signing digests (`/v1/digests/sign`): tree heads and other service evidence -----------


class DigestSignRequest(_Model):
    key_label: str = Field(max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the data, hex")


class DigestSignature(_Model):
    signature: str = Field(description="base64 DER (ECDSA) signature over the digest")
    signature_algorithm: str
    certificate_serial: str
    certificate_chain: list[str] = Field(description="PEM, the signing certificate first")
