"""The webhook parts of one portal process, made from its settings."""

from __future__ import annotations

from datetime import timedelta

from signet.portal.config import PortalSettings
from signet.portal.jobs.queue import Backoff, Handler
from signet.portal.webhooks import hook
from signet.portal.webhooks.delivery import DeliveryHandler
from signet.portal.webhooks.service import WebhookService
from signet.portal.webhooks.targets import TargetPolicy
from sqlalchemy.orm import Session, sessionmaker


def webhook_parts(
    settings: PortalSettings, sessions: sessionmaker[Session]
) -> tuple[WebhookService, dict[str, Handler]]:
    """The subscriptions' service and the jobs table's handler; the ledger hook installed."""
    give_up = timedelta(seconds=settings.webhook_give_up_seconds)
    hook.install(give_up)
    key = settings.derived_key("webhooks")
    policy = TargetPolicy(
        own_services=(settings.signer_url, settings.storage_url,
                      f"http://{settings.host}:{settings.port}"),
        own_public=(settings.public_url,),
        allow_loopback=settings.webhook_allow_loopback,
    )  # fmt: skip
    backoff = Backoff(settings.webhook_retry_base_seconds, settings.webhook_retry_cap_seconds)
    handler = DeliveryHandler(
        sessions, key, policy, backoff=backoff, timeout=settings.webhook_timeout_seconds,
        ca_file=settings.webhook_ca_file,
    )  # fmt: skip
    service = WebhookService(sessions, key, policy, give_up_after=give_up)
    return service, {hook.JOB_KIND: handler}
