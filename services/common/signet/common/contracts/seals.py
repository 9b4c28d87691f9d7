"""Seal use under its keeper's control: standing seal-use authorisations (用印授权).

A seal whose keeper is enrolled with the signer signs only with the keeper's consent:
either a seal-use approval of one document (an activation of the seal's key bound to
that document's SHA-256, exactly as a person confirms a signature), or a standing
authorisation for automatic and batch sealing (自动签署): which callers, which period,
how many documents, approved once by the keeper with an activation bound to the
SHA-256 of these very terms.  Each signature made under it names it and counts
against it; it can be revoked.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from signet.common.contracts.signer import ActivationProof, HexSerial

CallerName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
AuthorisationId = Annotated[str, Field(pattern=r"^sa_[A-Za-z0-9_-]{8,60}$")]

#: The longest standing authorisation: a keeper re-approves at least yearly.
MAX_PERIOD = timedelta(days=366)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthorisationState(StrEnum):
    PENDING = "pending"  # made, not yet approved by the keeper
    ACTIVE = "active"
    REVOKED = "revoked"


class SealAuthorisationRequest(_Model):
    """The terms a keeper is asked to approve."""

    certificate_serial: HexSerial | None = None
    key_label: str | None = Field(default=None, max_length=64)
    callers: list[CallerName] = Field(
        min_length=1,
        max_length=10,
        description="the service callers (token names, e.g. `portal`) that may seal under it",
    )
    not_before: AwareDatetime
    not_after: AwareDatetime
    max_documents: int = Field(ge=1, le=10_000_000)
    purpose: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")

    @model_validator(mode="after")
    def _terms(self) -> SealAuthorisationRequest:
        if (self.certificate_serial is None) == (self.key_label is None):
            raise ValueError("give exactly one of certificate_serial or key_label")
        if not self.not_before < self.not_after <= self.not_before + MAX_PERIOD:
            raise ValueError("not_after must be after not_before, by at most 366 days")
        return self


class SealAuthorisationApproval(_Model):
    """The keeper's activation for the terms' SHA-256, with the code they typed."""

    activation: ActivationProof


class SealAuthorisation(_Model):
    id: str
    certificate_serial: HexSerial
    key_label: str
    callers: list[str]
    not_before: datetime
    not_after: datetime
    max_documents: int
    used_documents: int
    purpose: str
    state: AuthorisationState
    #: what the keeper's activation is bound to (`terms_sha256`)
    terms_sha256: str
    requested_by: str
    created_at: datetime
    approved_activation: str | None = None
    approved_at: datetime | None = None
    revoked_by: str | None = None
    revoked_at: datetime | None = None


def terms_sha256(
    authorisation_id: str,
    serial: str,
    callers: list[str],
    not_before: datetime,
    not_after: datetime,
    max_documents: int,
    purpose: str,
) -> str:
    """The SHA-256 of the canonical terms: what the keeper's code confirms."""
    terms = {
        "id": authorisation_id,
        "certificate_serial": serial,
        "callers": sorted(callers),
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "max_documents": max_documents,
        "purpose": purpose,
    }
    canonical = json.dumps(terms, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
