"""The preservation job's state as storage reports it (`/readyz`, `GET /v1/preservation`).

Its own module so that the readiness contract names one field for it, and the CLI,
the operator and the docs read the same shape (docs/admin/preservation.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Who runs the periodic pass here: `single` (no Lease), `leader`, `standby` (another
#: replica holds the Lease), `unavailable` (the Lease could not be set up), `off`
#: (no periodic pass: `preservation_interval` is 0; a run on request still works).
PreservationRole = Literal["single", "leader", "standby", "unavailable", "off"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PreservationRunRequest(_Model):
    dry_run: bool = Field(
        default=False, description="only count what is due: nothing is renewed or stored"
    )


class PreservationProgress(_Model):
    dry_run: bool
    started: datetime
    done: int = Field(description="objects looked at so far")
    total: int = Field(description="objects in the vault when the pass began")


class PreservationRun(_Model):
    """One finished pass (`signet.storage.preservation.PreservationReport`)."""

    dry_run: bool
    started: datetime
    finished: datetime
    scanned: int = Field(description="signed PDFs looked at")
    due: int = Field(description="due for a renewal (renewed, failed, or counted in a dry run)")
    renewed: int
    already_preserved: int = Field(description="superseded by an earlier renewal")
    waiting_for_rollover: int = Field(
        description="due by the margin but stamped by the current TSA: roll the TSA over first"
    )
    failed: int
    failures: dict[str, str] = Field(
        default_factory=dict, description="original SHA-256 -> why (at most 50 shown)"
    )
    packages_renewed: int = Field(
        default=0, description="evidence packages superseded by a newer one after renewals"
    )
    backlog: int = Field(description="documents still due after this pass")
    backlog_deadline: datetime | None = Field(
        default=None,
        description="the earliest expiry of the last timestamp's certificate among them: "
        "the backlog must be renewed before this moment",
    )
    error: str | None = Field(
        default=None, description="why the pass stopped early (the signer unreachable, say)"
    )


class PreservationStatus(_Model):
    role: PreservationRole
    interval_seconds: float = Field(description="seconds between periodic passes; 0: none")
    margin_days: float = Field(description="renew this long before the certificate expires")
    running: PreservationProgress | None = None
    last_run: PreservationRun | None = Field(default=None, description="the last finished pass")
    last_success: datetime | None = Field(
        default=None, description="when the last pass that renewed (not a dry run) ended well"
    )
    next_run: datetime | None = Field(default=None, description="the next periodic pass, here")
