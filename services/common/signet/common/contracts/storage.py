"""Contracts of the storage service: the retained vault and the evidence ledger.

Shared by the storage service (which serves them), the portal and the signer's
callers (which use them), and `signet verify-evidence` (which checks packages
offline).  Hashes are lowercase hex SHA-256 everywhere.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from signet.common.contracts.preservation import PreservationStatus

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256, lowercase hex")]
#: An envelope's id: what the ledger files events under, the vault's `X-Signet-Envelope`,
#: a path segment and a file name in evidence packages; so never `..`, a slash or a space.
ENVELOPE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
EnvelopeId = Annotated[str, Field(min_length=1, max_length=64, pattern=ENVELOPE_ID_PATTERN)]
#: A caller-chosen event id: a UUID, or up to 64 of A-Z a-z 0-9 _ - (case-sensitive).
EVENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
EventId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=EVENT_ID_PATTERN,
        description="chosen by the caller (a UUID, or up to 64 of A-Z a-z 0-9 _ -): "
        "sending the same event again with it appends nothing and answers the first "
        "receipt; the same id with other content is refused (409 event_conflict)",
    ),
]

#: Bidirectional formatting characters: invisible, they reorder what a reader sees
#: (an "Trojan Source" actor name); refused with the C0/C1 controls (CR/LF, NUL, ESC).
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
#: The bounds of an event's `details`: a few short facts, never a document.
DETAILS_MAX_ENTRIES = 32
DETAILS_KEY_MAX = 64
DETAILS_VALUE_MAX = 4096
DETAILS_MAX_BYTES = 64 * 1024
#: The furthest a retention date may be set (a date past it could never be shortened
#: again, by anyone: Object Lock COMPLIANCE).
RETENTION_MAX_YEARS = 100


def unsafe_character(value: str) -> str | None:
    """The first character of `value` no rendering may carry as it is, named; None if clean.

    Controls (C0, DEL, C1: CR/LF forge lines, ESC starts ANSI sequences, NUL truncates),
    lone surrogates (not Unicode: UTF-8 cannot encode them) and the bidi overrides,
    embeddings and isolates.
    """
    for character in value:
        category = unicodedata.category(character)
        if category in ("Cc", "Cs") or character in BIDI_CONTROLS:
            return f"U+{ord(character):04X}"
    return None


def printable(value: str) -> str:
    """`value` safe to render as one line of text: each character `unsafe_character` names
    shown as an escape (``\\n``, ``\\x1b``, ``\\u202e``) instead of acting on the reader.

    For every rendering of stored text (summaries, reports, tables): events stored
    before the contract refused these characters are kept, and shown, as they are.
    """
    if unsafe_character(value) is None:
        return value
    out = []
    for character in value:
        if unicodedata.category(character) in ("Cc", "Cs") or character in BIDI_CONTROLS:
            out.append(character.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(character)
    return "".join(out)


def _plain_text(value: str) -> str:
    found = unsafe_character(value)
    if found is not None:
        raise ValueError(f"contains the control or formatting character {found}")
    return value


#: Text shown to people (summaries, reports, logs): no controls, valid Unicode.
PlainText = Annotated[str, AfterValidator(_plain_text)]
DetailKey = Annotated[
    str, Field(min_length=1, max_length=DETAILS_KEY_MAX, pattern=r"^[A-Za-z0-9_.:-]+$")
]
DetailValue = Annotated[str, Field(max_length=DETAILS_VALUE_MAX), AfterValidator(_plain_text)]
Actor = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_plain_text)]
UserAgent = Annotated[str, Field(max_length=512), AfterValidator(_plain_text)]


def _retention_date(value: datetime) -> datetime:
    limit = datetime.now(UTC) + timedelta(days=365 * RETENTION_MAX_YEARS + 25)
    if value > limit:
        raise ValueError(f"is more than {RETENTION_MAX_YEARS} years from now")
    return value


#: A retention date: with its time zone (a naive date is ambiguous by up to a day), and
#: at most `RETENTION_MAX_YEARS` ahead.
RetentionDate = Annotated[AwareDatetime, AfterValidator(_retention_date)]

#: The statutory minimum: documents and evidence are kept at least this long.
MINIMUM_RETENTION_YEARS = 5


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectKind(StrEnum):
    ORIGINAL = "original"
    REVISION = "revision"
    FINAL = "final"
    REPORT = "report"
    LEDGER = "ledger"
    EVIDENCE = "evidence"
    #: an envelope's certificate of completion (a sealed PDF)
    CERTIFICATE = "certificate"
    #: a file a recipient uploaded (an ID copy, a supporting document)
    ATTACHMENT = "attachment"


class ObjectInfo(_Model):
    sha256: Sha256Hex
    size: int
    content_type: str
    kind: ObjectKind
    envelope_id: str | None = None
    created_at: datetime
    retain_until: datetime
    legal_hold: bool = False


class RetentionRequest(_Model):
    retain_until: RetentionDate = Field(
        description="new date, with its time zone; only later than the current one, and at "
        f"most {RETENTION_MAX_YEARS} years from now"
    )


class LegalHoldRequest(_Model):
    on: bool


class ScrubFinding(_Model):
    sha256: str
    problem: str


class LedgerEventIn(_Model):
    """What a service reports; the ledger adds its index, the time it accepted the event
    and the hash of the envelope's previous event.

    Every field is bounded and printable: an event is kept for as long as the evidence
    (decades, immutable), and is shown in summaries, reports and logs.  So no control
    characters (CR/LF, NUL, ESC), no bidi overrides and no lone surrogates anywhere, and
    `details` is a flat map of at most 32 short entries (64 KiB in all, as UTF-8).
    """

    event_id: EventId | None = None
    event_type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    envelope_id: EnvelopeId
    actor: Actor = Field(description="who: user id, email, or service name")
    ip: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9.:%-]+$")
    user_agent: UserAgent | None = None
    document_hashes: list[Sha256Hex] = Field(default_factory=list, max_length=100)
    auth_method: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    details: dict[DetailKey, DetailValue] = Field(
        default_factory=dict, max_length=DETAILS_MAX_ENTRIES
    )

    @model_validator(mode="after")
    def _details_bounded(self) -> LedgerEventIn:
        size = len(json.dumps(self.details, ensure_ascii=False).encode("utf-8"))
        if size > DETAILS_MAX_BYTES:
            raise ValueError(f"details are {size} bytes as JSON; at most {DETAILS_MAX_BYTES}")
        return self


class LedgerReceipt(_Model):
    index: int
    leaf_hash: str
    time: datetime
    event_id: str | None = Field(default=None, description="the event's id, when it has one")
    replayed: bool = Field(
        default=False,
        description="true: an event with this id and content was appended before; this is "
        "its receipt (same index, leaf hash and time) and nothing was appended",
    )


class LedgerEntry(_Model):
    """One stored event as the ledger keeps it (`GET /v1/ledger/envelopes/{id}/events`).

    Read back from the leaf: fields are as stored (an event stored before a field
    existed has its default), never re-validated (leaves are immutable)."""

    index: int
    leaf_hash: str = Field(description="SHA-256 leaf hash (RFC 9162) of the stored leaf")
    event_id: str | None = None
    event_type: str
    envelope_id: str
    time: datetime = Field(description="when the ledger accepted the event")
    actor: str
    ip: str | None = None
    user_agent: str | None = None
    document_hashes: list[str] = Field(default_factory=list)
    auth_method: str | None = None
    details: dict[str, str] = Field(default_factory=dict)
    previous: str | None = Field(
        default=None, description="leaf hash of the envelope's event before this one"
    )


class EnvelopeEvents(_Model):
    """An envelope's events in ledger order; each leaf's inclusion proof is
    `GET /v1/ledger/proof/inclusion?index=<index>&tree_size=<tree_size>`."""

    envelope_id: str
    tree_size: int = Field(description="the ledger's size when read: every event listed is in it")
    events: list[LedgerEntry]
    next_after: int | None = Field(
        default=None, description="more events follow: ask again with after=<this>"
    )


class EvidenceSeal(_Model):
    """An envelope's sealed evidence package: made once, kept in the vault, recorded in
    the ledger (`POST /v1/envelopes/{id}/evidence`)."""

    envelope_id: str
    package_sha256: Sha256Hex = Field(description="the zip, a vault object (kind evidence)")
    size: int
    manifest_sha256: Sha256Hex = Field(description="SHA-256 of its signed manifest.json")
    created: datetime
    tree_size: int = Field(description="the signed tree head its proofs lead to")
    ledger_index: int = Field(description="the `evidence.sealed` event naming the manifest")
    leaf_hash: str
    generation: int = Field(
        default=1,
        description="1: the package sealed at completion; each preservation "
        "renewal of the envelope's documents makes the next, superseding the one before",
    )
    supersedes: Sha256Hex | None = Field(
        default=None, description="the package (vault object) this one supersedes"
    )


class TreeHead(_Model):
    """A signed tree head: the log's size and root, signed by the ledger seal and timestamped."""

    tree_size: int
    root_hash: str
    time: datetime
    log_id: str
    signature: str | None = Field(default=None, description="base64 DER signature over digest")
    signature_algorithm: str | None = None
    timestamp_token: str | None = Field(default=None, description="base64 RFC 3161 token")
    certificate_chain: list[str] = Field(
        default_factory=list, description="PEM: ledger seal certificate first, then its CAs"
    )


class InclusionProof(_Model):
    leaf_index: int
    tree_size: int
    leaf_hash: str
    audit_path: list[str]


class ConsistencyProof(_Model):
    first: int
    second: int
    path: list[str]


#: Who publishes signed tree heads: this process alone (no Lease, the embedded
#: default), or, among replicas sharing a Lease, this one (`leader`) or another
#: (`standby`); `unavailable`: this replica was given a Lease it cannot use (no
#: namespace, no API credentials) and never publishes.
PublisherRole = Literal["single", "leader", "standby", "unavailable"]


class StorageReadiness(_Model):
    status: str
    vault: str = Field(description="filesystem or s3")
    object_lock: str | None = Field(description="COMPLIANCE when the bucket enforces it")
    retention_years: int = Field(description="the bucket's default retention, in years")
    configured_retention_years: int | None = Field(
        default=None,
        description="years this process retains every object it writes (its setting, which "
        "the bucket's default must reach); null: a release that does not report it",
    )
    tree_head_interval_seconds: float | None = Field(
        default=None,
        description="seconds between signed tree heads this process runs with (its setting; "
        "0: only on demand); null: a release that does not report it",
    )
    ledger_size: int
    tree_head_publisher: PublisherRole | None = Field(
        default=None,
        description="single (no Lease), leader or standby (Lease), unavailable (the Lease "
        "could not be set up: see tree_head_publisher_problem); null: no periodic publisher",
    )
    tree_head_publisher_problem: str | None = Field(
        default=None, description="why the publisher is unavailable", max_length=500
    )
    tree_head_size: int | None = Field(
        default=None, description="entries covered by the latest signed tree head"
    )
    tree_head_time: datetime | None = Field(default=None, description="when it was signed")
    unsigned_since: datetime | None = Field(
        default=None,
        description="when the oldest entry not yet covered by a signed tree head was "
        "appended; null: every entry is covered (what staleness is measured from: a head "
        "signed long ago says nothing wrong about a log that was quiet since)",
    )
    policies: dict[str, int] = Field(
        default_factory=dict, description="signing policies in force: name -> version"
    )
    policy_problems: list[str] = Field(
        default_factory=list, description="policy files refused, with the reason"
    )
    preservation: PreservationStatus | None = Field(
        default=None, description="the preservation job here: its role, last pass, backlog"
    )
