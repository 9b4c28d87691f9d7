"""Contracts of the storage service: the retained vault and the evidence ledger.

Shared by the storage service (which serves them), the portal and the signer's
callers (which use them), and `signet verify-evidence` (which checks packages
offline).  Hashes are lowercase hex SHA-256 everywhere.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256, lowercase hex")]
EnvelopeId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]

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
    retain_until: datetime = Field(description="new date; only later than the current one")


class LegalHoldRequest(_Model):
    on: bool


class ScrubFinding(_Model):
    sha256: str
    problem: str


class LedgerEventIn(_Model):
    """What a service reports; the ledger adds the time it accepted the event."""

    event_type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    envelope_id: EnvelopeId
    actor: str = Field(max_length=256, description="who: user id, email, or service name")
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=512)
    document_hashes: list[Sha256Hex] = Field(default_factory=list, max_length=100)
    auth_method: str | None = Field(default=None, max_length=64)
    details: dict[str, str] = Field(default_factory=dict, max_length=32)


class LedgerReceipt(_Model):
    index: int
    leaf_hash: str
    time: datetime


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
