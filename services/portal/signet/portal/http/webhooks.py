"""``/api/v1/webhooks``: an organisation's subscriptions (the secret shown once), their
delivery log, and replays.  See docs/api/webhooks.md for what a receiver gets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from signet.portal.envelopes.contracts import PlainText
from signet.portal.http.deps import PortalDep, PrincipalDep
from signet.portal.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from signet.portal.webhooks.service import DeliveryLog
from signet.portal.webhooks.targets import MAX_URL

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

IdPath = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]
EventPattern = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z_.*]+$")]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: http:// or https://; a private address of the cluster is fine, the appliance's
    #: own services, loopback, link-local and metadata addresses are refused (422)
    url: str = Field(min_length=8, max_length=MAX_URL, examples=["https://erp.acme.internal/hooks"])
    #: exact types, ``family.*`` or ``*``; default: ``envelope.*`` and ``recipient.*``
    event_types: list[EventPattern] | None = Field(default=None, max_length=40)
    description: PlainText | None = None


class WebhookOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str
    created_at: datetime
    disabled_at: datetime | None

    @classmethod
    def of(cls, row: WebhookSubscription) -> WebhookOut:
        return cls(
            id=row.id, url=row.url, event_types=row.event_types, description=row.description,
            created_at=row.created_at, disabled_at=row.disabled_at,
        )  # fmt: skip


class NewWebhookOut(WebhookOut):
    #: the signing secret (``whsec_…``): shown this once, never again
    secret: str


class AttemptOut(BaseModel):
    started_at: datetime
    trigger: str
    address: str | None
    status_code: int | None
    latency_ms: int | None
    #: the first KiB of the receiver's answer
    response: str
    error: str | None

    @classmethod
    def of(cls, row: WebhookAttempt) -> AttemptOut:
        return cls(
            started_at=row.started_at, trigger=row.trigger, address=row.address,
            status_code=row.status_code, latency_ms=row.latency_ms, response=row.response,
            error=row.error,
        )  # fmt: skip


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    envelope_id: str
    sequence: int
    #: pending (being delivered or retried), delivered, or failed
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    body: str
    log: list[AttemptOut]

    @classmethod
    def of(cls, row: WebhookDelivery, attempts: list[AttemptOut]) -> DeliveryOut:
        return cls(
            id=row.id, event_id=row.event_id, event_type=row.event_type,
            envelope_id=row.envelope_id, sequence=row.sequence, state=row.state,
            attempts=row.attempts, last_status=row.last_status, last_error=row.last_error,
            created_at=row.created_at, delivered_at=row.delivered_at, body=row.body,
            log=attempts,
        )  # fmt: skip


def _delivery(entry: DeliveryLog) -> DeliveryOut:
    return DeliveryOut.of(entry.delivery, [AttemptOut.of(a) for a in entry.attempts])


@router.post("", status_code=201, response_model=NewWebhookOut)
async def create_webhook(
    portal: PortalDep, principal: PrincipalDep, body: WebhookIn
) -> NewWebhookOut:
    """Subscribe a URL to this organisation's events; the secret is in this answer only."""
    made = await run_in_threadpool(
        portal.webhooks.create, principal, body.url, body.event_types, body.description or ""
    )
    return NewWebhookOut(**WebhookOut.of(made.subscription).model_dump(), secret=made.secret)


@router.get("", response_model=list[WebhookOut])
async def list_webhooks(portal: PortalDep, principal: PrincipalDep) -> list[WebhookOut]:
    return [
        WebhookOut.of(r) for r in await run_in_threadpool(portal.webhooks.subscriptions, principal)
    ]


@router.get("/{webhook_id}", response_model=WebhookOut)
async def get_webhook(portal: PortalDep, principal: PrincipalDep, webhook_id: IdPath) -> WebhookOut:
    return WebhookOut.of(await run_in_threadpool(portal.webhooks.get, principal, webhook_id))


@router.delete("/{webhook_id}", response_model=WebhookOut)
async def disable_webhook(
    portal: PortalDep, principal: PrincipalDep, webhook_id: IdPath
) -> WebhookOut:
    """Disable: no new deliveries, queued ones fail saying so; the log stays readable."""
    return WebhookOut.of(await run_in_threadpool(portal.webhooks.disable, principal, webhook_id))


@router.get("/{webhook_id}/deliveries", response_model=list[DeliveryOut])
async def list_deliveries(
    portal: PortalDep,
    principal: PrincipalDep,
    webhook_id: IdPath,
    envelope_id: Annotated[str | None, Query(pattern=r"^[0-9a-f-]{36}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[DeliveryOut]:
    """Newest first, each with every attempt: status, latency, the first KiB of the answer."""
    found = await run_in_threadpool(
        lambda: portal.webhooks.deliveries(
            principal, webhook_id, limit=limit, envelope_id=envelope_id
        )
    )
    return [_delivery(entry) for entry in found]


@router.post("/{webhook_id}/deliveries/{delivery_id}/replay", status_code=202,
             response_model=DeliveryOut)  # fmt: skip
async def replay_delivery(
    portal: PortalDep, principal: PrincipalDep, webhook_id: IdPath, delivery_id: IdPath
) -> DeliveryOut:
    """Send a delivered or failed delivery again (same ``webhook-id`` and body, a fresh
    signature); 409 while it is still being delivered."""
    row = await run_in_threadpool(portal.webhooks.replay, principal, webhook_id, delivery_id)
    return DeliveryOut.of(row, [])
