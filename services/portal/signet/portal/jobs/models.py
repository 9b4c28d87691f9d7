"""One row per piece of background work (a webhook delivery, later reminders and the
like), written in the transaction of the step that made it due."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from signet.portal.schema import Base, utc_now
from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column


class Job(Base):
    """A job's life: ``scheduled`` (waiting for `run_at`, and for the jobs before it with
    the same `ordering_key`) → ``pending`` (due: any worker may claim it) → ``running``
    (claimed until `lease_until`) → ``succeeded`` or ``failed`` (with the reason), or
    back to ``scheduled`` for a retry."""

    __tablename__ = "jobs"

    #: an integer, so that it is also the order jobs were enqueued in
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), index=True)
    #: jobs sharing a key run one at a time, in enqueue order (None: no order)
    ordering_key: Mapped[str | None] = mapped_column(String(160), index=True)
    run_at: Mapped[datetime] = mapped_column(index=True)
    #: after this a failed attempt is the last one (None: retried without end)
    give_up_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: the current claim: a worker whose lease ran out may not record its result
    claim_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)
    finished_at: Mapped[datetime | None]
