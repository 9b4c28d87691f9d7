"""``GET /api/v1/outbox``: every message and its real state, for an administrator.

With no gateway configured (the embedded default) this is the delivery channel: the
held messages show their codes and links, so a newcomer can follow a contract
without a mail server.  With a gateway, bodies are stored masked and show no secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from signet.common.errors import NotFound
from signet.portal.http.deps import PortalDep, PrincipalDep
from signet.portal.notifications.models import OutboxMessage
from sqlalchemy import select

router = APIRouter(prefix="/api/v1", tags=["admin"])


class MessageOut(BaseModel):
    id: str
    envelope_id: str | None
    recipient_id: str | None
    notice: str
    channel: str
    to: str
    subject: str
    body: str
    state: str
    detail: str
    attempts: int
    created_at: datetime
    updated_at: datetime


@router.get("/outbox", response_model=list[MessageOut])
async def outbox(
    portal: PortalDep,
    principal: PrincipalDep,
    envelope_id: Annotated[str | None, Query(pattern=r"^[0-9a-f-]{36}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[MessageOut]:
    """Newest first, this organisation's messages (and the portal's own, unaddressed)."""

    def rows() -> list[OutboxMessage]:
        query = select(OutboxMessage).where(
            OutboxMessage.organisation_id == principal.organisation_id
        )
        if envelope_id is not None:
            query = query.where(OutboxMessage.envelope_id == envelope_id)
        query = query.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id).limit(limit)
        with portal.envelopes.sessions() as session:
            return list(session.scalars(query))

    return [_out(m) for m in await run_in_threadpool(rows)]


@router.post("/outbox/{message_id}/resend", response_model=MessageOut)
async def resend(
    portal: PortalDep,
    principal: PrincipalDep,
    message_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")],
) -> MessageOut:
    """Queue a failed message again (not a one-time code: the person asks for a new
    one); 409 for any other state."""
    row = await run_in_threadpool(portal.dispatcher.resend, message_id, principal.organisation_id)
    if row is None:
        raise NotFound("no such message")
    return _out(row)


def _out(m: OutboxMessage) -> MessageOut:
    return MessageOut(
        id=m.id,
        envelope_id=m.envelope_id,
        recipient_id=m.recipient_id,
        notice=m.notice,
        channel=m.channel,
        to=m.to,
        subject=m.subject,
        body=m.body,
        state=m.state,
        detail=m.detail,
        attempts=m.attempts,
        created_at=m.created_at,
        updated_at=m.updated_at,
    )
